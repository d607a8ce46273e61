"""The arguments of every training step (lesion.cli.args.training_options) as train.train's.

Apart from lesion.cli.args because it imports torch: only the training steps' handlers
import it, so the torch-free steps' code inputs stay torch-free (tests/test_envs.py).
"""

from __future__ import annotations

import argparse
import os

from lesion import tensorfiles, train
from lesion.cli.args import check_model_fits, parsed_source, require


def training_setup(args: argparse.Namespace) -> dict:
    """From training_options (input files checked): the train.train arguments that are not
    files, as a dict (network, settings, hooks, checkpoints); a step appends its own hooks
    after the options' dropout and masks."""
    require(args.train, args.test, args.init, args.masks)
    if args.checkpoint_epochs and args.checkpoints_dir is None:
        raise ValueError("--checkpoint-epochs needs --checkpoints-dir (where they go)")
    source = None
    if args.source is not None:
        source = parsed_source(args)
    else:
        check_model_fits(args.arch or args.model, args.dataset)
    given = []
    if args.dropout:
        given.append(train.Hook(dropout=args.dropout))
    if args.masks is not None:
        given.append(train.Hook(masks=tensorfiles.load_tensors(args.masks)))
    return {
        "network": train.Network(args.model, arch=args.arch, source=source, init=args.init,
                                 freeze=tuple(args.freeze)),
        "settings": train.Settings(
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            weight_decay=args.weight_decay, seed=args.seed, device=args.device,
            precision=args.precision, train_split=args.train_split, split_seed=args.split_seed),
        "hooks": given,
        "checkpoints": {e: os.path.join(args.checkpoints_dir, f"epoch{e}.safetensors")
                        for e in args.checkpoint_epochs},
    }
