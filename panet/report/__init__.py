"""What results become: test records, statistics, comparisons, analyses, figures, benchmarks,
tables rendered."""
