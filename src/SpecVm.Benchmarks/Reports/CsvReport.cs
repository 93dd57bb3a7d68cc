using System.Globalization;
using System.Text;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// One CSV row per point (invariant culture; per-thread values joined with ';'). The outcome columns are the outcomes
/// the result's strategies declared (each point's <see cref="ScalingPoint.Outcomes"/>), one column per distinct name in
/// first-seen order ("abort: seq-changed" becomes <c>outcome_abort_seq_changed</c>); a row is one strategy's, so a
/// name two strategies share ("success") shares a column, and a point leaves the outcomes its strategy does not
/// declare empty. Before them, <c>success_rate</c> (<see cref="ScalingPoint.SuccessRate"/>).
/// The last three columns are the point's mode and, for a predicted point, its band.
/// </summary>
internal static class CsvReport
{
    public static string Build(ScalingResult r)
    {
        var outcomeKeys = r.Points.SelectMany(p => (p.Outcomes ?? []).Select(o => o.Name)).Distinct().ToList();
        var sb = new StringBuilder();
        sb.Append("workload,strategy,threads,native,unit,ops_per_s,ops_per_s_stddev,ops_per_s_median,repeats,per_thread_ops_per_s,background_ops_per_s,");
        sb.Append("success_rate");
        foreach (string name in outcomeKeys)
        {
            sb.Append(",outcome_").Append(Column(name));
        }

        sb.AppendLine(",mmap_wait_ms_per_s,ipis_per_s,tlb_hit_rate,frames_per_s,mmap_write_held_share,mode,predicted_low,predicted_high");
        foreach (ScalingPoint p in r.Points)
        {
            var f = new List<string>
            {
                p.Workload, p.Strategy, I(p.Threads), p.Native ? "true" : "false", Quote(p.OperationUnit),
                D(p.OpsPerSecond), D(p.OpsPerSecondStdDev), D(p.OpsPerSecondMedian), I(p.RepeatOpsPerSecond.Count),
                string.Join(";", p.PerThreadOpsPerSecond.Select(D)), D(p.BackgroundOpsPerSecond),
                p.SuccessRate() is double s ? D(s) : string.Empty,
            };
            f.AddRange(outcomeKeys.Select(k => p.Outcomes?.Find(o => o.Name == k) is { } o ? I(o.Count) : string.Empty));
            f.Add(D(p.MmapLockWaitMsPerSecond));
            f.Add(D(p.IpisPerSecond));
            f.Add(p.TlbHitRate is double t ? D(t) : string.Empty);
            f.Add(D(p.FramesAllocatedPerSecond));
            f.Add(p.Metrics.TryGetValue("mmapWriteHeldShare", out double w) ? D(w) : string.Empty);
            f.Add(Series.ModeName(p));
            f.Add(p.PredictedLow is double lo ? D(lo) : string.Empty);
            f.Add(p.PredictedHigh is double hi ? D(hi) : string.Empty);
            sb.AppendLine(string.Join(",", f));
        }

        return sb.ToString();
    }

    /// <summary>A name as a column name: lower case, every run of other characters one underscore ("abort: seq-odd" → abort_seq_odd).</summary>
    private static string Column(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (char c in name.ToLowerInvariant())
        {
            if (char.IsAsciiLetterOrDigit(c))
            {
                sb.Append(c);
            }
            else if (sb.Length > 0 && sb[^1] != '_')
            {
                sb.Append('_');
            }
        }

        return sb.ToString().TrimEnd('_');
    }

    private static string I(long v) => v.ToString(CultureInfo.InvariantCulture);

    private static string D(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    private static string Quote(string s) => s.Contains(',', StringComparison.Ordinal) ? $"\"{s}\"" : s;
}
