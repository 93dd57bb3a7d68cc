using System.Globalization;
using System.Text;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// One CSV row per point (invariant culture; per-thread values joined with ';'). The abort-reason and per-VMA-lock
/// columns are the keys the result holds (the library declares them once), in the order it lists them. The last three
/// columns (added with results schema 3) are the point's mode and, for a predicted point, its band.
/// </summary>
internal static class CsvReport
{
    public static string Build(ScalingResult r)
    {
        var abortKeys = r.Points.SelectMany(p => p.AbortReasons.Keys).Distinct().ToList();
        var vmaKeys = r.Points.SelectMany(p => p.VmaLock.Keys).Distinct().ToList();
        var sb = new StringBuilder();
        sb.Append("workload,strategy,threads,native,unit,ops_per_s,ops_per_s_stddev,ops_per_s_median,repeats,per_thread_ops_per_s,background_ops_per_s,");
        sb.Append("spec_attempts,spec_success_rate,");
        sb.Append(string.Join(",", abortKeys.Select(k => "abort_" + k.Replace('-', '_'))));
        sb.Append(',');
        sb.Append(string.Join(",", vmaKeys.Select(k => "vma_lock_" + k)));
        sb.AppendLine(",mmap_wait_ms_per_s,ipis_per_s,tlb_hit_rate,frames_per_s,mmap_write_held_share,mode,predicted_low,predicted_high");
        foreach (ScalingPoint p in r.Points)
        {
            var f = new List<string>
            {
                p.Workload, p.Strategy, I(p.Threads), p.Native ? "true" : "false", Quote(p.OperationUnit),
                D(p.OpsPerSecond), D(p.OpsPerSecondStdDev), D(p.OpsPerSecondMedian), I(p.RepeatOpsPerSecond.Count),
                string.Join(";", p.PerThreadOpsPerSecond.Select(D)), D(p.BackgroundOpsPerSecond),
                I(p.SpeculativeAttempts), p.SpeculativeSuccessRate is double s ? D(s) : string.Empty,
            };
            f.AddRange(abortKeys.Select(k => I(p.AbortReasons.GetValueOrDefault(k))));
            f.AddRange(vmaKeys.Select(k => I(p.VmaLock.GetValueOrDefault(k))));
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

    private static string I(long v) => v.ToString(CultureInfo.InvariantCulture);

    private static string D(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    private static string Quote(string s) => s.Contains(',', StringComparison.Ordinal) ? $"\"{s}\"" : s;
}
