using System.Diagnostics;
using System.Globalization;
using System.Text;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// The report's "Where the time goes" section (issue #16): rates and fairness of every point (ops per wall-second and
/// per CPU-second, will-it-scale's per-task min/max and <c>linear</c>), then, for each workload × strategy × mode at
/// its largest thread count, the wait-time histograms and an estimated attribution of the throughput lost against
/// linear scaling to mmap-lock waits, PTL waits, shootdown waits, aborted attempts and an unexplained rest.
/// Wait kinds are enumerated from <see cref="WaitHistogram"/>, never spelt here.
/// </summary>
internal static class WhereTheTimeGoes
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Append(StringBuilder sb, ScalingResult r, ValidationReport? validation)
    {
        sb.AppendLine("## Where the time goes");
        sb.AppendLine();
        Fairness(sb, r, validation);

        var largest = r.Points
            .Where(p => !p.Native)
            .GroupBy(p => (p.Workload, p.Strategy, Series.ModeName(p)))
            .Select(g => g.MaxBy(p => p.Threads)!)
            .ToList();
        if (largest.Count == 0)
        {
            return;
        }

        if (largest.All(p => p.WaitHistograms == null))
        {
            sb.AppendLine("This result was written before wait histograms were recorded: no wait histograms or attribution.");
            sb.AppendLine();
            return;
        }

        Histograms(sb, largest, validation);
        Attribution(sb, r, largest, validation);
    }

    /// <summary>Rates and fairness of every point.</summary>
    private static void Fairness(StringBuilder sb, ScalingResult r, ValidationReport? validation)
    {
        sb.AppendLine("### Rates and fairness");
        sb.AppendLine();
        sb.AppendLine("*Linear* is the 1-thread throughput × threads (will-it-scale's `linear` column): perfect scaling. "
            + "*Ops per CPU-second* is ops/s ÷ threads (pft's per-CPU rate): each task's CPU thread runs its loop without sleeping "
            + "(it spins on locks and acks; only an mmap-lock wait may block it), so its CPU time is taken as the window's wall time. "
            + "*Min/max* are the slowest and fastest task's ops/s (fairness); their ratio is 1 when every task got the same share.");
        sb.AppendLine();
        sb.AppendLine("| workload | strategy | threads | mode | ops/s | linear | of linear | ops per CPU-s | per-thread min | per-thread max | min/max |");
        sb.AppendLine("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (ScalingPoint p in r.Points)
        {
            double? linear = Linear(r, p);
            double min = p.PerThreadMin ?? (p.PerThreadOpsPerSecond.Count > 0 ? p.PerThreadOpsPerSecond.Min() : 0);
            double max = p.PerThreadMax ?? (p.PerThreadOpsPerSecond.Count > 0 ? p.PerThreadOpsPerSecond.Max() : 0);
            double perCpu = p.OpsPerCpuSecond ?? (p.Threads > 0 ? p.OpsPerSecond / p.Threads : 0);
            string ofLinear = linear is > 0 ? (p.OpsPerSecond / linear.Value).ToString("P0", Inv) : "–";
            string ratio = max > 0 ? (min / max).ToString("0.00", Inv) : "–";
            sb.AppendLine(Inv, $"| {p.Workload} | {Series.Label(p)} | {p.Threads} | {MarkdownReport.ModeLabel(p, validation)} | {p.OpsPerSecond:N0} | {(linear is double l ? l.ToString("N0", Inv) : "–")} | {ofLinear} | {perCpu:N0} | {min:N0} | {max:N0} | {ratio} |");
        }

        sb.AppendLine();
    }

    /// <summary>The wait histograms of each workload × strategy × mode at its largest thread count.</summary>
    private static void Histograms(StringBuilder sb, List<ScalingPoint> points, ValidationReport? validation)
    {
        sb.AppendLine("### Wait histograms");
        sb.AppendLine();
        sb.AppendLine("Waits that waited, by length, summed over the measured tasks' CPUs (a background writer's CPU excluded) and windows, at each series' largest thread count; "
            + "the uncontended path of each lock is not timed. *Share* is the kind's total wait over the CPU time of the measured tasks (threads × window). "
            + "Kinds with no waits are left out.");
        sb.AppendLine();
        sb.AppendLine(Inv, $"| workload | strategy | threads | mode | wait | {string.Join(" | ", WaitHistogram.BucketLabels)} | total ms | share |");
        sb.AppendLine(Inv, $"|---|---|---:|---|---|{string.Concat(Enumerable.Repeat("---:|", WaitHistogram.BucketCount))}---:|---:|");
        foreach (ScalingPoint p in points)
        {
            double cpuSeconds = CpuSeconds(p);
            bool any = false;
            foreach (WaitKind kind in WaitHistogram.Kinds)
            {
                string name = WaitHistogram.Name(kind);
                if (p.WaitHistograms?.GetValueOrDefault(name) is not { } buckets || buckets.Sum() == 0)
                {
                    continue;
                }

                any = true;
                double seconds = WaitSeconds(p, kind);
                string share = cpuSeconds > 0 ? (seconds / cpuSeconds).ToString("P1", Inv) : "–";
                sb.AppendLine(Inv, $"| {p.Workload} | {p.Strategy} | {p.Threads} | {MarkdownReport.ModeLabel(p, validation)} | {name} | {string.Join(" | ", buckets.Select(b => b.ToString("N0", Inv)))} | {seconds * 1000:0.0} | {share} |");
            }

            if (!any)
            {
                sb.AppendLine(Inv, $"| {p.Workload} | {p.Strategy} | {p.Threads} | {MarkdownReport.ModeLabel(p, validation)} | none | {string.Concat(Enumerable.Repeat("0 | ", WaitHistogram.BucketCount))}0.0 | 0.0% |");
            }
        }

        sb.AppendLine();
    }

    /// <summary>The estimated attribution of throughput lost against linear scaling.</summary>
    private static void Attribution(StringBuilder sb, ScalingResult r, List<ScalingPoint> points, ValidationReport? validation)
    {
        var rows = new List<string>();
        foreach (ScalingPoint p in points)
        {
            double? linear = Linear(r, p);
            double cpuSeconds = CpuSeconds(p);
            if (p.Threads < 2 || linear is not > 0 || cpuSeconds <= 0 || p.WaitHistograms == null)
            {
                continue;
            }

            // Shares of the tasks' CPU time (threads × window). At the 1-thread rate, productive CPU time is
            // ops / ops₁ per second of threads CPU-seconds, so the lost share is (linear − actual) / linear.
            double lost = Math.Max(0, (linear.Value - p.OpsPerSecond) / linear.Value);
            double readWait = WaitSeconds(p, WaitKind.MmapRead);
            double writeHeld = p.Counters.GetValueOrDefault(nameof(CpuCounter.MmapWriteHoldTicks)) / (double)Stopwatch.Frequency;
            double behindWriters = Math.Min(readWait, writeHeld * p.Threads);
            double contention = readWait - behindWriters + WaitSeconds(p, WaitKind.MmapWrite);
            double ptl = WaitSeconds(p, WaitKind.Ptl);
            double shootdown = WaitSeconds(p, WaitKind.ShootdownAck);
            double aborted = AbortedWork(r, p);
            double explained = (behindWriters + contention + ptl + shootdown + aborted) / cpuSeconds;
            string S(double seconds) => (seconds / cpuSeconds).ToString("P1", Inv);
            rows.Add(string.Create(Inv, $"| {p.Workload} | {p.Strategy} | {p.Threads} | {MarkdownReport.ModeLabel(p, validation)} | {lost:P1} | {S(behindWriters)} | {S(contention)} | {S(ptl)} | {S(shootdown)} | {(double.IsNaN(aborted) ? "–" : S(aborted))} | {(double.IsNaN(aborted) ? "–" : (lost - explained).ToString("P1", Inv))} |"));
        }

        sb.AppendLine("### Lost throughput, attributed (an estimate)");
        sb.AppendLine();
        if (rows.Count == 0)
        {
            sb.AppendLine("None: attribution needs a series with a 1-thread point and a larger thread count.");
            sb.AppendLine();
            return;
        }

        sb.AppendLine("Each cell is a share of the measured tasks' CPU time (threads × window) at the series' largest thread count. "
            + "*Lost* is (linear − actual) ÷ linear: the CPU time that did not produce operations at the 1-thread rate. It is split, approximately, into: "
            + "*behind writers* — mmap-lock read waits up to the time the lock was held for write × threads (a faulter cannot wait on a write hold longer than it lasts); "
            + "*mmap-lock contention* — the read waits beyond that (waiting while a writer queued for readers to drain, and wake-up latency) plus the tasks' own write waits; "
            + "*PTL* and *shootdown* — page-table-lock spins and shootdown ack waits; "
            + "*aborted attempts* — the strategy's attempts that fell back to the mmap lock (its declared fallbacks, or else its aborts) × the CPU time of one fault at 1 thread (an upper bound: an abort usually stops before the page is zeroed); "
            + "*rest* — what the waits do not explain: cache-line contention on shared words (the lock counts, the allocator), lost caches, and the host. "
            + "Waits count the measured tasks' CPUs only, but they overlap (a task's munmap waiting for acks holds the lock that other tasks' faults wait for), and the write-held time includes a background writer's holds, so the rest can be negative. "
            + "Virtual-time points count virtual time throughout.");
        sb.AppendLine();
        sb.AppendLine("| workload | strategy | threads | mode | lost | behind writers | mmap-lock contention | PTL | shootdown | aborted attempts | rest |");
        sb.AppendLine("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (string row in rows)
        {
            sb.AppendLine(row);
        }

        sb.AppendLine();
    }

    /// <summary>
    /// CPU seconds wasted on attempts that fell back: the strategy's declared <see cref="FaultOutcomeKind.Fallback"/>
    /// count (its <see cref="FaultOutcomeKind.Abort"/> counts summed when it declares no total) × CPU seconds per fault
    /// at 1 thread; NaN without a 1-thread point that faulted.
    /// </summary>
    private static double AbortedWork(ScalingResult r, ScalingPoint p)
    {
        long aborts = p.Outcomes?.Exists(o => o.Kind == FaultOutcomeKind.Fallback) == true ? p.OutcomeTotal(FaultOutcomeKind.Fallback) : p.OutcomeTotal(FaultOutcomeKind.Abort);
        if (aborts <= 0)
        {
            return 0;
        }

        ScalingPoint? one = Series.Find(r, p.Workload, p.Strategy, 1, Series.IsPredicted(p));
        long faults = one?.Counters.GetValueOrDefault(nameof(CpuCounter.Faults)) ?? 0;
        return one == null || faults <= 0 ? double.NaN : aborts * (CpuSeconds(one) / faults);
    }

    private static double? Linear(ScalingResult r, ScalingPoint p) =>
        p.Linear ?? (Series.Find(r, p.Workload, p.Strategy, 1, Series.IsPredicted(p)) is { } one ? one.OpsPerSecond * p.Threads : null);

    private static double CpuSeconds(ScalingPoint p) => p.MeasuredSeconds * p.Threads;

    private static double WaitSeconds(ScalingPoint p, WaitKind kind) => p.WaitSeconds?.GetValueOrDefault(WaitHistogram.Name(kind)) ?? 0;
}
