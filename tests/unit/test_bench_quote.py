"""The README's benchmark rows are bench/RESULTS.md's, verbatim (bench/quote.py writes them)."""

from __future__ import annotations

import pytest

from bench import quote


def test_the_readmes_benchmark_rows_are_those_of_results_md():
    readme, results = quote.README.read_text(), quote.RESULTS.read_text()
    assert quote.with_quote(readme, results) == readme, "run `python bench/quote.py` after changing RESULTS.md"


def test_a_row_results_md_lacks_is_an_error_not_a_gap():
    results = quote.RESULTS.read_text().replace("| c. **throughput ratio**", "| c. throughput ratio")
    with pytest.raises(LookupError, match="throughput ratio"):
        quote.quote(results)
