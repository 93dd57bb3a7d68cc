namespace SpecVm.Scaling;

/// <summary>One point of a comparison: the same workload × strategy × threads in two results.</summary>
/// <param name="Workload">Workload name.</param>
/// <param name="Strategy">Strategy name.</param>
/// <param name="Threads">Thread count.</param>
/// <param name="BaselineOpsPerSecond">Throughput in the baseline (A), or null if A lacks the point.</param>
/// <param name="CandidateOpsPerSecond">Throughput in the candidate (B), or null if B lacks the point.</param>
public sealed record ComparisonRow(string Workload, string Strategy, int Threads, double? BaselineOpsPerSecond, double? CandidateOpsPerSecond)
{
    /// <summary>B / A, or null when either is missing or A is 0.</summary>
    public double? Ratio => BaselineOpsPerSecond is double a && CandidateOpsPerSecond is double b && a > 0 ? b / a : null;
}

/// <summary>Puts two <see cref="ScalingResult"/>s side by side (the <c>compare</c> command).</summary>
public static class ResultComparer
{
    /// <summary>Every point present in either result, matched by workload, strategy and thread count, in a stable order.</summary>
    /// <param name="baseline">Result A.</param>
    /// <param name="candidate">Result B.</param>
    public static IReadOnlyList<ComparisonRow> Compare(ScalingResult baseline, ScalingResult candidate)
    {
        ArgumentNullException.ThrowIfNull(baseline);
        ArgumentNullException.ThrowIfNull(candidate);
        var keys = baseline.Points.Concat(candidate.Points)
            .Select(p => (p.Workload, p.Strategy, p.Threads))
            .Distinct()
            .OrderBy(k => k.Workload, StringComparer.Ordinal)
            .ThenBy(k => k.Strategy, StringComparer.Ordinal)
            .ThenBy(k => k.Threads);
        var rows = new List<ComparisonRow>();
        foreach (var (w, s, n) in keys)
        {
            rows.Add(new ComparisonRow(w, s, n, baseline.Find(w, s, n)?.OpsPerSecond, candidate.Find(w, s, n)?.OpsPerSecond));
        }

        return rows;
    }

    /// <summary>The geometric mean of the ratios present, or null when there are none.</summary>
    /// <param name="rows">Comparison rows.</param>
    public static double? GeometricMeanRatio(IEnumerable<ComparisonRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var ratios = rows.Select(r => r.Ratio).OfType<double>().Where(r => r > 0).ToList();
        return ratios.Count == 0 ? null : Math.Exp(ratios.Average(Math.Log));
    }
}
