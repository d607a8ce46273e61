"""The adversarial study (Szegedy et al. 2013, "Intriguing properties of neural networks"):
minimum-distortion box-constrained L-BFGS examples, their transfer across models and
training sets, Gaussian-noise controls, adversarial training and unit inspection."""
