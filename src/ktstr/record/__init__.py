"""The RunRecord: its schema, the one builder and the one loader."""

from ktstr.record.schema import SCHEMA, RunRecord
from ktstr.record.stored import from_json, load, save

__all__ = ["SCHEMA", "RunRecord", "from_json", "load", "save"]
