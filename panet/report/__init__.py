"""What results become: test records, statistics, comparisons, analyses, figures, tables rendered."""
