"""The census's table (lesion.files.TableKind), torch-free."""

from lesion.files import TableKind

CENSUS = TableKind("census", "census count", ("tensor", "parameters", "near_zero"))
