"""Hardware weight faults: bit flips and stuck-at bits hit exactly the bits asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lesion import evaluate, metrics, operators, sweeps
from lesion.predict import _table

SEEDS = st.integers(min_value=0, max_value=2**63 - 1)
BIT_SETS = st.one_of(
    st.sampled_from(["all", "sign", "exponent", "mantissa", ["sign", "exponent"]]),
    st.lists(st.integers(min_value=0, max_value=31), min_size=1, max_size=6, unique=True),
)
FIELDS_F32 = {"sign": [31], "exponent": list(range(23, 31)), "mantissa": list(range(23))}


def layer(seed: int = 0, shape=(40, 30)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"weight": torch.randn(shape, generator=g), "bias": torch.randn(shape[0], generator=g)}


def changed_bits(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Per entry, the int32 pattern of bits that differ."""
    return old.view(torch.int32) ^ new.view(torch.int32)


def positions(pattern: torch.Tensor) -> set[int]:
    """The bit positions set anywhere in an int32 tensor."""
    return {b for b in range(32) if bool(((pattern >> b) & 1).any())}


def test_bit_fields_of_float32_are_sign_exponent_mantissa():
    for name, bits in FIELDS_F32.items():
        assert operators.bit_positions(name, torch.float32) == bits
    assert operators.bit_positions("all", torch.float32) == list(range(32))
    assert operators.bit_positions(["sign", 3, 3], torch.float32) == [3, 31]
    assert operators.bit_positions("exponent", torch.float16) == list(range(10, 15))
    assert operators.bit_positions("exponent", torch.float64) == list(range(52, 63))


@pytest.mark.parametrize("bits", ["nibble", 32, [-1], [True]])
def test_an_unknown_bit_is_refused_with_what_is_allowed(bits):
    with pytest.raises(ValueError, match=r"bits = .* expected one of \['all', 'sign'"):
        operators.apply("bitflip", layer(), 0.1, seed=0, bits=bits)


@settings(max_examples=40, deadline=None)
@given(bits=BIT_SETS, level=st.floats(min_value=0.0, max_value=1.0), seed=SEEDS)
def test_bitflip_touches_exactly_the_requested_bit_positions(bits, level, seed):
    base = layer()
    out = operators.apply("bitflip", base, level, seed, bits=bits)
    allowed = set(operators.bit_positions(bits, torch.float32))
    for name in ("weight", "bias"):  # biases too
        assert positions(changed_bits(base[name], out[name])) <= allowed
    if level == 1.0:  # every selected bit of every entry flips
        mask = sum(1 << b for b in allowed)
        mask = mask - (1 << 32) if mask >= 1 << 31 else mask
        assert (changed_bits(base["weight"], out["weight"]) == mask).all()


@settings(max_examples=30, deadline=None)
@given(bits=BIT_SETS, level=st.floats(min_value=0.0, max_value=1.0), seed=SEEDS,
       kind=st.sampled_from(["stuck_at_zero", "stuck_at_one"]))
def test_stuck_at_bits_only_clear_or_only_set_the_requested_bits(bits, level, seed, kind):
    base = layer()
    out = operators.apply(kind, base, level, seed, bits=bits)
    allowed = set(operators.bit_positions(bits, torch.float32))
    for name in base:
        old, new = base[name].view(torch.int32), out[name].view(torch.int32)
        diff = old ^ new
        assert positions(diff) <= allowed
        # stuck at 0 can only clear bits, stuck at 1 only set them
        assert not ((new if kind == "stuck_at_zero" else old) & diff).any()
        if level == 1.0:
            for b in allowed:
                assert bool((((new >> b) & 1) == (kind == "stuck_at_one")).all())


def test_bit_faults_are_reproducible_from_the_seed_and_differ_across_seeds():
    base = layer()
    for kind in ("bitflip", "stuck_at_zero", "stuck_at_one"):
        a = operators.apply(kind, base, 0.05, seed=11, bits="mantissa")
        b = operators.apply(kind, base, 0.05, seed=11, bits="mantissa")
        c = operators.apply(kind, base, 0.05, seed=12, bits="mantissa")
        assert all(torch.equal(a[k].view(torch.int32), b[k].view(torch.int32)) for k in base)
        assert not torch.equal(a["weight"], c["weight"])
        assert not base["weight"].data_ptr() == a["weight"].data_ptr()  # a new tensor


def test_bitflip_rate_is_the_per_bit_probability():
    base = layer(shape=(300, 200))
    level, bits = 0.02, FIELDS_F32["mantissa"]
    out = operators.apply("bitflip", base, level, seed=3, bits="mantissa")
    diff = changed_bits(base["weight"], out["weight"])
    flips = sum(int(((diff >> b) & 1).sum()) for b in bits)
    trials = base["weight"].numel() * len(bits)
    assert abs(flips / trials - level) < 4 * np.sqrt(level * (1 - level) / trials)


def test_bit_fault_options_go_into_the_variants_table_and_regenerate(mlp):
    base = {k: p.detach() for k, p in mlp[3].named_parameters()}  # fc2
    levels = [0.001, 0.002, 0.01]  # finer than the seed study's two decimals
    table, variants = sweeps.variant_table(
        base, dataset="digits", model="mlp", layer="fc2", perturbation="bitflip", levels=levels,
        draws=2, study_seed=0, options={"bits": ["sign", "exponent"]})
    rows = table.to_pylist()
    assert len({r["variant"] for r in rows}) == len(rows)
    assert rows[0]["variant"] == "mlp-fc2-bitflip0.001-num0"
    assert {json.loads(r["options"])["bits"] == ["sign", "exponent"] for r in rows} == {True}
    for row, new in zip(rows, variants, strict=True):
        again = sweeps.regenerate(row, base)
        assert all(torch.equal(again[k].view(torch.int32), new[k].view(torch.int32)) for k in new)


def test_options_of_another_operator_are_refused():
    with pytest.raises(ValueError, match="option 'bits' does not apply to gaussian; expected no options"):
        operators.apply("gaussian", layer(), 0.1, seed=0, bits="sign")


def test_nonfinite_outputs_are_counted_not_crashed_on():
    labels = torch.tensor([0, 1, 2, 3])
    logits = torch.randn(2, 4, 10)
    logits[1, 0, 3] = torch.nan
    logits[1, 2, 5] = torch.inf
    tops, losses = zip(*(evaluate.summarise(v, labels) for v in logits), strict=True)
    assert torch.isnan(losses[1]).tolist() == [True, False, True, False]
    predictions = _table(["clean", "faulty"], labels, list(tops), list(losses))
    reference = metrics.clean_top1(_table(["clean"], labels, [tops[0]], [losses[0]]))
    frame = metrics.variant_metrics(predictions, reference).set_index("variant")
    assert frame.loc["clean", "nonfinite"] == 0
    assert frame.loc["faulty", "nonfinite"] == 0.5
    assert np.isfinite(frame.loc["faulty", "loss"])  # the mean over finite outputs
    assert frame.loc["faulty", "agreement"] <= 0.5  # a non-finite output agrees with nothing


@pytest.mark.parametrize(("dtype", "bits"), [(torch.float32, "all"), (torch.float64, ["sign", 3]),
                                             (torch.float16, "exponent")])
def test_masks_are_the_hits_of_the_uniform_stream_in_order(monkeypatch, dtype, bits):
    """Entry i's mask has bit positions[j] set where uniform (i, j) of the generator's stream
    (drawn [chunk, bits] at a time) is below the level: rebuilt with Python integers."""
    monkeypatch.setattr(operators, "_CHUNK", 7)  # several chunks, the last one short
    t = torch.zeros(20, dtype=dtype)
    positions = operators.bit_positions(bits, dtype)
    width = torch.finfo(dtype).bits
    got = operators._bit_masks(t, 0.4, positions, torch.Generator().manual_seed(5))
    stream = torch.Generator().manual_seed(5)
    uniforms = torch.cat([torch.rand((min(7, 20 - s), len(positions)), generator=stream)
                          for s in range(0, 20, 7)])
    for entry, row in zip(got.tolist(), uniforms.tolist(), strict=True):
        expected = sum(1 << p for p, u in zip(positions, row, strict=True) if u < 0.4)
        assert entry % (1 << width) == expected  # two's complement: the sign bit as unsigned
