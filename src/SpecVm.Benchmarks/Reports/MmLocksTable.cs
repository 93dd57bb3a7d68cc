using System.Globalization;
using System.Text;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// The report's "Memory-management locks" table (issue #17): per point, each mm lock's acquisitions per operation,
/// the share of them that spun, and the spin time per second of window. Lock names come from the points
/// (<see cref="ScalingPoint.MmLocks"/>), never spelt here.
/// </summary>
internal static class MmLocksTable
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Append(StringBuilder sb, ScalingResult r, ValidationReport? validation)
    {
        var points = r.Points.Where(p => p.MmLocks != null && !p.Native).ToList();
        if (points.Count == 0)
        {
            return; // Native points only, or a result from before the mm locks.
        }

        List<string> names = points.SelectMany(p => p.MmLocks!.Keys).Distinct().ToList();
        sb.AppendLine("## Memory-management locks");
        sb.AppendLine();
        sb.AppendLine("Per lock: *acq/op* is acquisitions per operation (the zone lock once per per-CPU list refill or drain, the LRU lock once per folio batch added or freed; "
            + "for memcg, which has atomic counters and no lock, walks of the counter hierarchy), *spun* the share of acquisitions that had to spin "
            + "(for memcg: charges its limit refused), *wait ms/s* the milliseconds spent spinning per second of window, summed over every CPU "
            + "(for memcg: time in the walks). Predicted points count virtual time.");
        sb.AppendLine();
        sb.Append("| workload | strategy | threads | mode |");
        foreach (string n in names)
        {
            sb.Append(Inv, $" {n} acq/op | {n} spun | {n} wait ms/s |");
        }

        sb.AppendLine();
        sb.Append("|---|---|---:|---|");
        sb.Append(string.Concat(Enumerable.Repeat("---:|---:|---:|", names.Count)));
        sb.AppendLine();
        foreach (ScalingPoint p in points)
        {
            double ops = p.OpsPerSecond * p.MeasuredSeconds;
            sb.Append(Inv, $"| {p.Workload} | {Series.Label(p)} | {p.Threads} | {MarkdownReport.ModeLabel(p, validation)} |");
            foreach (string n in names)
            {
                if (p.MmLocks!.TryGetValue(n, out MmLockStats? s) && s.Acquisitions > 0)
                {
                    string perOp = ops > 0 ? (s.Acquisitions / ops).ToString("0.000", Inv) : "–";
                    string spun = (s.Contentions / (double)s.Acquisitions).ToString("P1", Inv);
                    string wait = p.MeasuredSeconds > 0 ? (s.WaitSeconds * 1000 / p.MeasuredSeconds).ToString("0.0", Inv) : "–";
                    sb.Append(Inv, $" {perOp} | {spun} | {wait} |");
                }
                else
                {
                    sb.Append(" – | – | – |");
                }
            }

            sb.AppendLine();
        }

        sb.AppendLine();
    }
}
