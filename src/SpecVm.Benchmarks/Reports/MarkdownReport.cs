using System.Globalization;
using System.Text;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// The Markdown report, written for the machine it ran on: first what the data can say (each strategy's ratio to the
/// baseline with its spread, at every thread count), then throughput per family with the kernel in its own table, the
/// target checks each with a line of context, per-point details, USL fits only where a fit is possible, and the plots.
/// Series are enumerated from the result (<see cref="Series"/>); no strategy is looked up by name.
/// </summary>
internal static class MarkdownReport
{
    /// <summary>A strategy with the writer should keep at least this share of its own no-writer throughput.</summary>
    public const double KeepTarget = 0.9;

    /// <summary>A strategy with the writer should reach at least this multiple of the baseline's throughput.</summary>
    public const double OverBaselineTarget = 1.5;

    /// <summary>The suffix of a workload's quiet twin (the same loaders, no writer): database-load-nowriter.</summary>
    public const string NoWriterSuffix = "-nowriter";

    /// <summary>The metric a writer workload reports: the share of time the mmap lock was held for write.</summary>
    private const string WriteHeldMetric = "mmapWriteHeldShare";

    /// <summary>The metric a workload reports when its writer runs on a loader's CPU (no writer thread of its own).</summary>
    private const string InterleavedWriterMetric = "writerOpsPerSecond";

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Build(ScalingResult r, IReadOnlyList<PlotFile> plots)
    {
        var sb = new StringBuilder();
        MachineInfo m = r.Machine;
        ScalingSettings s = r.Settings;
        List<int> threads = Series.ThreadCounts(r);
        sb.AppendLine("# SpecVm scaling report");
        sb.AppendLine();
        if (r.Partial)
        {
            sb.AppendLine("> **Partial result:** the run was interrupted; points may have fewer repeats than asked for, and some may be missing.");
            sb.AppendLine();
        }

        if (r.Runtime is { BuildConfiguration: "Debug" })
        {
            sb.AppendLine("> **Debug build:** measured with an unoptimised build of SpecVm (about 3× slower); do not compare with Release results.");
            sb.AppendLine();
        }

        foreach (string warning in r.Warnings)
        {
            sb.AppendLine(Inv, $"> **Warning:** {warning}");
            sb.AppendLine();
        }

        sb.AppendLine(Inv, $"- Machine: {m.CpuModel}; {m.AllowedCores} usable of {m.LogicalCores} logical cores; {m.MemoryBytes / (1L << 30)} GiB; {m.Os}; {m.DotNet}");
        if (m.KernelRelease is { Length: > 0 } || r.Runtime != null)
        {
            sb.AppendLine(Inv, $"- Kernel {m.KernelRelease ?? "unknown"}; build {r.Runtime?.BuildConfiguration ?? "unknown"}; tiered PGO {(r.Runtime?.TieredPgo == true ? "on" : "off")}; server GC {(r.Runtime?.ServerGc == true ? "on" : "off")}");
        }

        sb.AppendLine(Inv, $"- Commit: {m.GitCommit ?? "unknown"}{(m.GitDirty == true ? " (with uncommitted changes)" : string.Empty)}; finished {r.CreatedUtc:u}");
        sb.AppendLine(Inv, $"- Runs: {s.WarmupSeconds:0.###} s warm-up, {s.DurationSeconds:0.###} s measured, {s.Repeats} repeats per point (mean ± sample standard deviation, SD); threads {string.Join(", ", threads)}");
        if (s.TargetedShootdowns != null || s.DowngradeOnUnmap != null)
        {
            sb.AppendLine(Inv, $"- Model: targeted shootdowns {(s.TargetedShootdowns == true ? "on" : "off")}; munmap {(s.DowngradeOnUnmap == false ? "holds the mmap lock for write through the zap (4.14)" : "downgrades to read before zapping (4.20+)")}");
        }

        sb.AppendLine("- Each thread is one simulated CPU pinned to one core; `native (kernel)` runs the same loop on the real kernel (mmap/munmap/madvise): real page faults, on its own scale, never a ratio to the model.");
        sb.AppendLine();

        string? baseline = Series.Baseline(r);
        var families = Series.ByFamily(r);
        if (baseline != null)
        {
            WhatTheDataSays(sb, r, baseline, families, threads);
        }

        foreach (var (family, series) in families)
        {
            Throughput(sb, family, series);
        }

        TargetChecks(sb, r, baseline);
        Details(sb, r);
        UslSection(sb, r, threads);
        if (plots.Count > 0)
        {
            sb.AppendLine("## Plots");
            sb.AppendLine();
            foreach (PlotFile p in plots)
            {
                sb.AppendLine(Inv, $"### {p.Title}");
                sb.AppendLine();
                sb.AppendLine(Inv, $"![{p.Title}]({p.Png}) ([SVG]({p.Svg}))");
                sb.AppendLine();
            }
        }

        return sb.ToString();
    }

    private static void WhatTheDataSays(StringBuilder sb, ScalingResult r, string baseline, List<(string Family, List<(string Label, List<ScalingPoint> Points)> Series)> families, List<int> threads)
    {
        sb.AppendLine("## What this run can say");
        sb.AppendLine();
        sb.Append(Inv, $"Each model strategy's throughput as a ratio to {baseline} (the result's first strategy) at each thread count: mean ratio ± SD ");
            sb.AppendLine("propagated from both points' repeats. \"within spread\" means the ratio is less than 2 SD from 1: this run cannot tell the two apart.");
        if (threads.Count < Usl.MinPoints)
        {
            sb.AppendLine(Inv, $"With {threads.Count} thread count{(threads.Count == 1 ? string.Empty : "s")} ({string.Join(", ", threads)}) on {r.Machine.AllowedCores} usable cores, these ratios and the 1→{threads.Max()} efficiencies below are what the data supports; scaling laws need more cores.");
        }

        sb.AppendLine();
        foreach (var (family, series) in families)
        {
            var model = series.Where(x => x.Label != Series.KernelLabel).ToList();
            var others = model.Where(x => x.Label != baseline).ToList();
            var basePoints = model.Find(x => x.Label == baseline).Points;
            if (others.Count == 0 || basePoints == null)
            {
                continue;
            }

            sb.AppendLine(Inv, $"**{family}** (ratio to {baseline})");
            sb.AppendLine();
            sb.Append("| threads |");
            foreach (var (label, _) in others)
            {
                sb.Append(Inv, $" {label} / {baseline} |");
            }

            sb.AppendLine();
            sb.AppendLine("|---:|" + string.Concat(Enumerable.Repeat("---:|", others.Count)));
            foreach (int n in threads)
            {
                ScalingPoint? b = basePoints.Find(p => p.Threads == n);
                sb.Append(Inv, $"| {n} |");
                foreach (var (_, points) in others)
                {
                    ScalingPoint? p = points.Find(x => x.Threads == n);
                    if (p == null || b == null || b.OpsPerSecond <= 0 || p.OpsPerSecond <= 0)
                    {
                        sb.Append(" – |");
                        continue;
                    }

                    var (ratio, sd) = Series.Ratio(p.OpsPerSecond, p.OpsPerSecondStdDev, b.OpsPerSecond, b.OpsPerSecondStdDev);
                    sb.Append(Inv, $" {ratio:0.00} ± {sd:0.00} ({Verdict(ratio, sd, 1)}) |");
                }

                sb.AppendLine();
            }

            sb.AppendLine();
        }
    }

    /// <summary>"above", "below" or "within spread" of a target, at 2 SD.</summary>
    private static string Verdict(double value, double sd, double target) =>
        Math.Abs(value - target) < 2 * sd ? "within spread" : value > target ? "above" : "below";

    private static void Throughput(StringBuilder sb, string family, List<(string Label, List<ScalingPoint> Points)> series)
    {
        var model = series.Where(x => x.Label != Series.KernelLabel).ToList();
        var kernel = series.Where(x => x.Label == Series.KernelLabel).ToList();
        string unit = series[0].Points[0].OperationUnit;
        sb.AppendLine(Inv, $"## {family}: {unit} per second");
        sb.AppendLine();
        sb.AppendLine("Mean ± SD (n repeats); efficiency X(N) / (N·X(1)) ± SD in brackets (1 = linear scaling).");
        sb.AppendLine();
        if (model.Count > 0)
        {
            Table(sb, "model", model);
        }

        if (kernel.Count > 0)
        {
            sb.AppendLine("The kernel on this machine, on its own scale (real page faults with their system-call and zeroing costs):");
            sb.AppendLine();
            Table(sb, "kernel", kernel);
        }
    }

    private static void Table(StringBuilder sb, string what, List<(string Label, List<ScalingPoint> Points)> series)
    {
        var threads = series.SelectMany(x => x.Points).Select(p => p.Threads).Distinct().Order().ToList();
        sb.Append(Inv, $"| threads ({what}) |");
        foreach (var (label, _) in series)
        {
            sb.Append(Inv, $" {label} |");
        }

        sb.AppendLine();
        sb.AppendLine("|---:|" + string.Concat(Enumerable.Repeat("---:|", series.Count)));
        foreach (int n in threads)
        {
            sb.Append(Inv, $"| {n} |");
            foreach (var (_, points) in series)
            {
                ScalingPoint? p = points.Find(x => x.Threads == n);
                if (p == null)
                {
                    sb.Append(" – |");
                    continue;
                }

                string cell = string.Create(Inv, $"{p.OpsPerSecond:N0} ± {p.OpsPerSecondStdDev:N0} (n={Series.Repeats(p)})");
                if (n > 1 && Series.Efficiency(p, points.Find(x => x.Threads == 1)) is var (e, esd))
                {
                    cell += string.Create(Inv, $" [{e:0.00} ± {esd:0.00}]");
                }

                sb.Append(Inv, $" {cell} |");
            }

            sb.AppendLine();
        }

        sb.AppendLine();
    }

    /// <summary>
    /// The writer checks: for each workload with a writer and its quiet twin in the result, every non-baseline strategy
    /// should keep <see cref="KeepTarget"/> of its quiet throughput and beat the baseline by <see cref="OverBaselineTarget"/>.
    /// </summary>
    private static void TargetChecks(StringBuilder sb, ScalingResult r, string? baseline)
    {
        var model = r.Points.Where(p => !p.Native).ToList();
        var quietNames = model.Select(p => p.Workload).Where(w => w.EndsWith(NoWriterSuffix, StringComparison.Ordinal)).Distinct().ToList();
        foreach (string workload in model.Where(p => WriterOps(p) > 0).Select(p => p.Workload).Distinct())
        {
            string? quiet = quietNames.Find(q => workload.StartsWith(q[..^NoWriterSuffix.Length], StringComparison.Ordinal));
            int n = model.Where(p => p.Workload == workload).Max(p => p.Threads);
            ScalingPoint? Find(string w, string strategy) => model.Find(p => p.Workload == w && p.Strategy == strategy && p.Threads == n);
            ScalingPoint? basePoint = baseline == null ? null : Find(workload, baseline);
            var candidates = Series.StrategyOrder(r).Where(x => x != baseline).Select(x => Find(workload, x)).OfType<ScalingPoint>().ToList();
            if (candidates.Count == 0)
            {
                continue;
            }

            sb.AppendLine(Inv, $"## Target checks: {workload} ({n} loader CPUs, with its writer)");
            sb.AppendLine();
            sb.AppendLine("| check | target | measured (± SD) | verdict |");
            sb.AppendLine("|---|---:|---:|---|");
            foreach (ScalingPoint c in candidates)
            {
                ScalingPoint? q = quiet == null ? null : Find(quiet, c.Strategy);
                if (q != null && q.OpsPerSecond > 0)
                {
                    var (keep, sd) = Series.Ratio(c.OpsPerSecond, c.OpsPerSecondStdDev, q.OpsPerSecond, q.OpsPerSecondStdDev);
                    sb.AppendLine(Inv, $"| {c.Strategy} with writer / {c.Strategy} without ({quiet}) | ≥ {KeepTarget:0.0#} | {keep:0.000} ± {sd:0.000} | {CheckVerdict(keep, sd, KeepTarget)} |");
                }

                if (basePoint != null && basePoint.OpsPerSecond > 0)
                {
                    var (over, sd) = Series.Ratio(c.OpsPerSecond, c.OpsPerSecondStdDev, basePoint.OpsPerSecond, basePoint.OpsPerSecondStdDev);
                    sb.AppendLine(Inv, $"| {c.Strategy} / {baseline}, both with writer | ≥ {OverBaselineTarget:0.0#} | {over:0.000} ± {sd:0.000} | {CheckVerdict(over, sd, OverBaselineTarget)} |");
                }
            }

            sb.AppendLine();
            int cores = r.Machine.AllowedCores;
            sb.Append(Inv, $"- *Keep* compares a strategy with its own throughput without the writer: it measures what the writer's mmap-lock write holds cost the loaders. ");
            bool ownThread = model.Any(p => p.Workload == workload && p.BackgroundOpsPerSecond > 0);
            if (ownThread)
            {
                sb.AppendLine(Inv, $"Here {n} loaders and the writer's thread share {cores} core{(cores == 1 ? string.Empty : "s")}{(n >= cores ? ", so the writer's CPU time also comes out of the loaders' and can miss the target with no locking cost at all" : string.Empty)}.");
            }
            else
            {
                sb.AppendLine("Here the writer's operations run on loader 0's CPU, so their CPU time comes out of that loader's as well as their locking cost.");
            }

            if (basePoint != null)
            {
                sb.Append(Inv, $"- *Over {baseline}* compares strategies under the same writer: the gain comes only from loaders not queueing behind the writer's mmap-lock holds. ");
                sb.Append(Inv, $"{baseline} waited {basePoint.MmapLockWaitMsPerSecond:0} ms/s for the mmap lock here (write held {Share(basePoint)}). ");
                sb.AppendLine(Inv, $"The target assumes enough loaders for that queue to dominate; with {n} loader{(n == 1 ? string.Empty : "s")} it may be short, and run-to-run spread can exceed the difference.");
            }

            string writer = string.Join(", ", model.Where(p => p.Workload == workload && p.Threads == n).Select(p => string.Create(Inv, $"{WriterOps(p):N0} under {p.Strategy}")));
            sb.AppendLine(Inv, $"- Writer throughput (ops/s): {writer}; mmap lock held for write: {string.Join(", ", candidates.Select(c => $"{Share(c)} under {c.Strategy}"))}.");
            sb.AppendLine();
        }
    }

    private static string CheckVerdict(double value, double sd, double target) =>
        Math.Abs(value - target) < 2 * sd ? (value >= target ? "met, within spread" : "missed, within spread") : value >= target ? "met" : "missed";

    private static void Details(StringBuilder sb, ScalingResult r)
    {
        var reasons = r.Points.SelectMany(p => p.AbortReasons.Keys).Distinct().ToList();
        var vmaKeys = r.Points.SelectMany(p => p.VmaLock.Keys).Distinct().ToList();
        sb.AppendLine("## Details per point");
        sb.AppendLine();
        sb.AppendLine("Speculative success = successes / attempts; aborts fall back to the mmap lock. "
            + $"Per-VMA lock: {string.Join("/", vmaKeys)}. mmap wait: ms waited for the mmap lock per second (all CPUs). Write held: share of time the mmap lock was held for write.");
        sb.AppendLine();
        sb.AppendLine("| workload | strategy | threads | median ops/s | per-thread ops/s | spec success | aborts (count) | per-VMA lock | mmap wait ms/s | write held | IPIs/s | TLB hit | frames/s | writer ops/s |");
        sb.AppendLine("|---|---|---:|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (ScalingPoint p in r.Points)
        {
            string perThread = string.Join(" / ", p.PerThreadOpsPerSecond.Select(x => x.ToString("N0", Inv)));
            string success = p.SpeculativeSuccessRate is double sr ? sr.ToString("P2", Inv) : "–";
            string aborts = string.Join(", ", reasons.Where(k => p.AbortReasons.GetValueOrDefault(k) > 0).Select(k => $"{k} {p.AbortReasons[k].ToString("N0", Inv)}"));
            long vmaTotal = p.VmaLock.Values.Sum();
            string vma = vmaTotal > 0 ? string.Join("/", vmaKeys.Select(k => p.VmaLock.GetValueOrDefault(k).ToString("N0", Inv))) : "–";
            string tlb = p.TlbHitRate is double t ? t.ToString("P1", Inv) : "–";
            string bg = WriterOps(p) > 0 ? WriterOps(p).ToString("N0", Inv) : "–";
            string mmapWait = p.Native ? "–" : p.MmapLockWaitMsPerSecond.ToString("0.0", Inv);
            string ipis = p.Native ? "–" : p.IpisPerSecond.ToString("N0", Inv);
            string frames = p.Native ? "–" : p.FramesAllocatedPerSecond.ToString("N0", Inv);
            sb.AppendLine(Inv, $"| {p.Workload} | {Series.Label(p)} | {p.Threads} | {p.OpsPerSecondMedian.ToString("N0", Inv)} | {perThread} | {success} | {(aborts.Length == 0 ? "–" : aborts)} | {vma} | {mmapWait} | {Share(p)} | {ipis} | {tlb} | {frames} | {bg} |");
        }

        sb.AppendLine();
    }

    private static void UslSection(StringBuilder sb, ScalingResult r, List<int> threads)
    {
        sb.AppendLine("## Universal Scalability Law fits");
        sb.AppendLine();
        if (threads.Count < Usl.MinPoints)
        {
            sb.AppendLine(Inv, $"None: this run measured {threads.Count} thread count{(threads.Count == 1 ? string.Empty : "s")} ({string.Join(", ", threads)}), and a fit of σ and κ needs {Usl.MinPoints} or more (a machine with {Usl.MinPoints}+ cores, or `--oversubscribe`).");
            sb.AppendLine();
            return;
        }

        var fitted = r.Usl.Where(f => f.HasFit).ToList();
        var unfitted = r.Usl.Where(f => !f.HasFit).ToList();
        sb.AppendLine("C(N) = N / (1 + σ(N−1) + κN(N−1)), fitted by least squares on x = N−1, y = N/C(N) − 1 (docs/references.md).");
        sb.AppendLine();
        if (fitted.Count > 0)
        {
            sb.AppendLine("| workload | strategy | points | σ | κ | peak N |");
            sb.AppendLine("|---|---|---:|---:|---:|---:|");
            foreach (UslFit f in fitted)
            {
                sb.AppendLine(Inv, $"| {f.Workload} | {f.Strategy} | {f.Points} | {f.Sigma?.ToString("0.0000", Inv) ?? "–"} | {f.Kappa?.ToString("0.00000", Inv) ?? "–"} | {f.PeakThreads?.ToString("0.0", Inv) ?? "–"} |");
            }

            sb.AppendLine();
        }

        if (unfitted.Count > 0)
        {
            sb.AppendLine(Inv, $"No fit for {string.Join(", ", unfitted.Select(f => $"{f.Workload}/{f.Strategy}"))}: {string.Join("; ", unfitted.Select(f => f.Note).Distinct())}.");
            sb.AppendLine();
        }
    }

    /// <summary>The writer's operations per second: its own thread's, or those it ran on a loader's CPU.</summary>
    private static double WriterOps(ScalingPoint p) =>
        p.BackgroundOpsPerSecond > 0 ? p.BackgroundOpsPerSecond : p.Metrics.GetValueOrDefault(InterleavedWriterMetric);

    private static string Share(ScalingPoint p) => p.Metrics.TryGetValue(WriteHeldMetric, out double v) ? v.ToString("P1", Inv) : "–";
}
