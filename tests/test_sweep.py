"""Sweeps: the variants table, regeneration from a row, and its hash check."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from lesion import files, kinds, models, operators, sweeps, tensorfiles


@pytest.fixture()
def base(mlp) -> dict[str, torch.Tensor]:
    return models.layer_tensors(mlp, "fc2")


def table(base, perturbation="synapse_knockout", levels=(0.25, 0.5), draws=3):
    return sweeps.variant_table(base, dataset="digits", model="mlp", layer="fc2",
                               perturbation=perturbation, levels=levels, draws=draws,
                               study_seed=7)


def test_one_row_per_level_and_draw_with_the_seed_study_ids(base):
    rows = table(base)[0].to_pylist()
    assert [(r["level"], r["draw"]) for r in rows] == [(lv, d) for lv in (0.25, 0.5) for d in range(3)]
    assert rows[4]["variant"] == "mlp-fc2-synapse_knockout0.50-num1"
    assert table(base)[0].schema == sweeps.VARIANT_SCHEMA


def test_recorded_differences_match_the_variant_tensors(base):
    t, variants = table(base, levels=(0.5,), draws=1)
    row, new = t.to_pylist()[0], variants[0]
    n = sum(v.numel() for v in base.values())
    assert row["weights"] == n
    # knockout zeroes round(0.5 * n) entries of each tensor; entries already 0 do not change
    expected = sum(int((base[k] != 0).logical_and(new[k] == 0).sum()) for k in base)
    assert row["changed"] == expected
    old = torch.cat([v.reshape(-1) for v in base.values()]).double()
    diff = torch.cat([(new[k] - base[k]).reshape(-1) for k in base]).double()
    assert row["rel_l2"] == pytest.approx(float(diff.norm() / old.norm()))
    assert row["rel_l1"] == pytest.approx(float(diff.abs().sum() / old.abs().sum()))
    assert row["sha256"] == tensorfiles.tensors_sha256(new)


def test_regenerate_reproduces_every_row(base):
    t, variants = table(base, perturbation="gaussian")
    for row, new in zip(t.to_pylist(), variants, strict=True):
        again = sweeps.regenerate(row, base)
        assert all(torch.equal(again[k], new[k]) for k in new)


def test_regenerate_refuses_a_variant_whose_hash_changed(base):
    row = table(base, perturbation="redraw")[0].to_pylist()[0]
    changed = {k: v.clone() for k, v in base.items()}
    changed["weight"][0, 0] += 1.0  # the weights changed since the table was written
    with pytest.raises(sweeps.VariantMismatchError, match="rebuild the variants table"):
        sweeps.regenerate(row, changed)


def test_seeds_differ_across_draws_levels_and_layers():
    seeds = {operators.variant_seed(0, "mlp", layer, "gaussian", level, draw)
             for layer in ("fc1", "fc2") for level in (0.1, 0.2) for draw in range(5)}
    assert len(seeds) == 20
    assert operators.variant_seed(0, "mlp", "fc1", "gaussian", 0.1, 0) != \
        operators.variant_seed(1, "mlp", "fc1", "gaussian", 0.1, 0)


def test_variant_weights_writes_each_variant_of_a_layer_checked(tmp_path, mlp):
    """An operator's table holds every layer it sweeps; --layer picks one layer's variants."""
    weights = tmp_path / "weights.safetensors"
    models.save_weights(mlp, weights)
    sweeps.write_variants("digits", str(weights), ["fc1", "fc2"], "node_knockout", levels=[0.3],
                         draws=2, study_seed=0, out=str(tmp_path / "v.parquet"))
    out = tmp_path / "variant_weights"
    sweeps.write_variant_weights("digits", str(weights), str(tmp_path / "v.parquet"), str(out),
                                layer="fc2")
    written = sorted(p.name for p in out.iterdir())
    assert written == ["mlp-fc2-node_knockout0.30-num0.safetensors",
                       "mlp-fc2-node_knockout0.30-num1.safetensors"]
    meta = tensorfiles.load_metadata(out / written[0])
    assert tensorfiles.tensors_sha256(tensorfiles.load_tensors(out / written[0])) == meta["sha256"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    every = tmp_path / "every_layer"
    sweeps.write_variant_weights("digits", str(weights), str(tmp_path / "v.parquet"), str(every))
    assert len(list(every.iterdir())) == 4
    with pytest.raises(files.InputFileError, match=r"no variants of layer 'fc3'; expected one "
                                                   r"of the layers the table holds: \['fc1', 'fc2'\]"):
        sweeps.write_variant_weights("digits", str(weights), str(tmp_path / "v.parquet"),
                                    str(tmp_path / "none"), layer="fc3")


def test_a_sweep_covers_its_layers_in_forward_order_and_refuses_unknown_ones(mlp):
    assert sweeps.swept_layers(mlp, "all") == ["fc1", "fc2", "fc3"]
    assert sweeps.swept_layers(mlp, ["all"]) == ["fc1", "fc2", "fc3"]
    assert sweeps.swept_layers(mlp, ["fc3", "fc1"]) == ["fc1", "fc3"]
    assert sweeps.swept_layers(mlp, "fc2") == ["fc2"]
    with pytest.raises(ValueError, match=r"'fc9' is not a weight layer .*\['fc1', 'fc2', 'fc3'\]"):
        sweeps.swept_layers(mlp, ["fc1", "fc9"])
    with pytest.raises(ValueError, match=r"layers \['fc8', 'fc9'\] are not weight layers of 'mlp'"):
        sweeps.swept_layers(mlp, ["fc8", "fc1", "fc9"])


def test_a_variants_table_may_hold_several_layers_but_one_operator(tmp_path, base):
    rows = [*table(base, perturbation="gaussian")[0].to_pylist()]
    several = [*rows, *({**r, "layer": "fc1", "variant": r["variant"].replace("fc2", "fc1")}
                        for r in rows)]
    files.write_table(pa.Table.from_pylist(several, schema=sweeps.VARIANT_SCHEMA),
                      tmp_path / "layers.parquet", kind=kinds.VARIANTS)
    assert sweeps.read_variants(tmp_path / "layers.parquet", "mlp") == several
    assert sweeps.by_layer(several) == {"fc2": list(range(6)), "fc1": list(range(6, 12))}
    mixed = [*rows, *({**r, "perturbation": "redraw"} for r in rows)]
    files.write_table(pa.Table.from_pylist(mixed, schema=sweeps.VARIANT_SCHEMA),
                      tmp_path / "operators.parquet", kind=kinds.VARIANTS)
    with pytest.raises(files.InputFileError, match=r"expected one perturbation per table, found "
                                                   r"\['gaussian', 'redraw'\]"):
        sweeps.read_variants(tmp_path / "operators.parquet", "mlp")


def test_the_difference_without_norms_computes_them(base):
    """Without the base's norms (a caller that has none) the row is the same, against the
    whole-vector formulas in float64."""
    new = operators.apply("gaussian", base, 0.5, seed=3)
    old = torch.cat([base[k].flatten() for k in sorted(base)]).double()
    d = torch.cat([new[k].flatten() for k in sorted(new)]).double() - old
    row = sweeps._difference(base, new)
    assert row == sweeps._difference(base, new, norms=sweeps._norms(base))
    assert row["changed"] == int(torch.count_nonzero(d))
    assert row["rel_l1"] == pytest.approx(float(d.abs().sum() / old.abs().sum()), rel=1e-12)
    assert row["rel_l2"] == pytest.approx(float(d.norm() / old.norm()), rel=1e-12)


def test_a_changed_variant_is_refused_with_both_hashes(base):
    row = table(base, perturbation="redraw")[0].to_pylist()[0]
    changed = {k: v.clone() for k, v in base.items()}
    changed["weight"][0, 0] += 1.0
    digest = tensorfiles.tensors_sha256(operators.apply("redraw", changed, row["level"], row["seed"]))
    with pytest.raises(sweeps.VariantMismatchError) as error:
        sweeps.regenerate(row, changed)
    assert str(error.value) == (
        f"variant {row['variant']}: regenerated tensors hash to {digest[:12]}..., the variants "
        f"table recorded {row['sha256'][:12]}...; the weights or the operator changed since the "
        "table was written: rebuild the variants table")
