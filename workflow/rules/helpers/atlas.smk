# Helpers of atlas.smk: its config section, the models it covers, the tables it reads.
ATLAS = config.get("atlas")
ATLAS_DIR = f"{RESULTS}/{{dataset}}/atlas"


def atlas_coverage():
    """model -> the studies (CLI groups) whose atlas measures cover it."""
    covered = {}
    for group, tables in ATLAS_TABLES.items():
        for model in tables(DATASET):
            covered.setdefault(model, []).append(group)
    return covered


def atlas_models():
    """atlas.models, each checked to be covered twice; absent: every model covered twice."""
    covered = atlas_coverage()
    if "models" not in ATLAS:
        found = [m for m in MODELS if len(covered.get(m, [])) >= 2]
        if not found:
            stop(f"config error: atlas: no model is covered by two or more studies (now "
                 f"{covered or 'none'}); expected a model in two studies' models, or no atlas")
        return found
    for model in ATLAS["models"]:
        if model not in MODELS:
            stop(f"config error: atlas.models: {model!r} is not a model of this study; "
                 f"expected some of {MODELS}")
        if len(covered.get(model, [])) < 2:
            stop(f"config error: atlas.models: {model!r} is covered by "
                 f"{covered.get(model) or 'no study'}; expected models two or more studies "
                 f"cover (now {[m for m in MODELS if len(covered.get(m, [])) >= 2]})")
    return list(ATLAS["models"])


ATLAS_MODELS = atlas_models() if ATLAS else []


def atlas_tables(wildcards):
    """{STUDY:MODEL:NAME: path} of every table the atlas models' measures read."""
    return {
        f"{group}:{model}:{name}": path
        for group, tables in ATLAS_TABLES.items()
        for model, paths in tables(wildcards.dataset).items()
        if model in ATLAS_MODELS
        for name, path in paths.items()
    }


def atlas_layers(wildcards):
    return {m: LAYERS.format(dataset=wildcards.dataset, model=m) for m in ATLAS_MODELS}


def atlas_options():
    options = [f"--within {ATLAS['within']!r}", f"--bootstrap {ATLAS['bootstrap']}"]
    options += [f"--crash-level {ATLAS['crash_level']!r}"] if "crash_level" in ATLAS else []
    options += [f"--bit-level {ATLAS['bit_level']!r}"] if "bit_level" in ATLAS else []
    return " ".join(options)


def atlas_report(name, caption, **labels):
    return report(
        f"{ATLAS_DIR}/{name}",
        caption=f"../report/atlas/{caption}.rst",
        category="Atlas",
        subcategory="{dataset}",
        labels=labels,
    )


ATLAS_FIGURES = [f"heat_{m}" for m in ATLAS_MODELS] + ["agreement", "depth"]
