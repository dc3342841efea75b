"""The words of a validator's own messages (msgspec's, Litestar's), which no text shown to a person may contain:
each failure must reach the API client or the member of staff as a sentence that names the field."""

from __future__ import annotations

import re

VALIDATOR_WORDS = re.compile(r"`|\$\.|Expected|Object (missing|contains)|Invalid (enum|RFC3339|UUID)|got `")
