using System.Globalization;
using System.Text;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>One CSV row per point (invariant culture; per-thread values joined with ';').</summary>
internal static class CsvReport
{
    private static readonly string[] AbortKeys = ["vma-not-found", "seq-odd", "seq-changed", "unsupported-kind", "no-page-table", "ptl-busy", "pte-changed", "access-error"];
    private static readonly string[] VmaKeys = ["success", "abort", "retry", "miss"];

    public static string Build(ScalingResult r)
    {
        var sb = new StringBuilder();
        sb.Append("workload,strategy,threads,native,unit,ops_per_s,ops_per_s_stddev,ops_per_s_median,repeats,per_thread_ops_per_s,background_ops_per_s,");
        sb.Append("spec_attempts,spec_success_rate,");
        sb.Append(string.Join(",", AbortKeys.Select(k => "abort_" + k.Replace('-', '_'))));
        sb.Append(',');
        sb.Append(string.Join(",", VmaKeys.Select(k => "vma_lock_" + k)));
        sb.AppendLine(",mmap_wait_ms_per_s,ipis_per_s,tlb_hit_rate,frames_per_s,mmap_write_held_share");
        foreach (ScalingPoint p in r.Points)
        {
            var f = new List<string>
            {
                p.Workload, p.Strategy, I(p.Threads), p.Native ? "true" : "false", Quote(p.OperationUnit),
                D(p.OpsPerSecond), D(p.OpsPerSecondStdDev), D(p.OpsPerSecondMedian), I(p.RepeatOpsPerSecond.Count),
                string.Join(";", p.PerThreadOpsPerSecond.Select(D)), D(p.BackgroundOpsPerSecond),
                I(p.SpeculativeAttempts), p.SpeculativeSuccessRate is double s ? D(s) : string.Empty,
            };
            f.AddRange(AbortKeys.Select(k => I(p.AbortReasons.GetValueOrDefault(k))));
            f.AddRange(VmaKeys.Select(k => I(p.VmaLock.GetValueOrDefault(k))));
            f.Add(D(p.MmapLockWaitMsPerSecond));
            f.Add(D(p.IpisPerSecond));
            f.Add(p.TlbHitRate is double t ? D(t) : string.Empty);
            f.Add(D(p.FramesAllocatedPerSecond));
            f.Add(p.Metrics.TryGetValue("mmapWriteHeldShare", out double w) ? D(w) : string.Empty);
            sb.AppendLine(string.Join(",", f));
        }

        return sb.ToString();
    }

    private static string I(long v) => v.ToString(CultureInfo.InvariantCulture);

    private static string D(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    private static string Quote(string s) => s.Contains(',', StringComparison.Ordinal) ? $"\"{s}\"" : s;
}
