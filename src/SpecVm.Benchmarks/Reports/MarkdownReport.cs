using System.Globalization;
using System.Text;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>The Markdown report: machine, settings, throughput tables, details, USL fits, the DatabaseLoad check, plots.</summary>
internal static class MarkdownReport
{
    /// <summary>Speculative with the writer should keep at least this share of its own no-writer throughput.</summary>
    public const double KeepTarget = 0.9;

    /// <summary>Speculative with the writer should reach at least this multiple of MmapLock's throughput.</summary>
    public const double OverMmapLockTarget = 1.5;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Build(ScalingResult r, IReadOnlyList<PlotFile> plots)
    {
        var sb = new StringBuilder();
        MachineInfo m = r.Machine;
        sb.AppendLine("# SpecVm scaling report");
        sb.AppendLine();
        sb.AppendLine(Inv, $"- Machine: {m.CpuModel}; {m.AllowedCores} usable of {m.LogicalCores} logical cores; {m.MemoryBytes / (1L << 30)} GiB; {m.Os}; {m.DotNet}");
        sb.AppendLine(Inv, $"- Commit: {m.GitCommit ?? "unknown"}{(m.GitDirty == true ? " (with uncommitted changes)" : string.Empty)}; finished {r.CreatedUtc:u}");
        ScalingSettings s = r.Settings;
        sb.AppendLine(Inv, $"- Runs: {s.WarmupSeconds:0.###} s warm-up, {s.DurationSeconds:0.###} s measured, {s.Repeats} repeats per point (mean ± sample standard deviation); threads {string.Join(", ", s.ThreadCounts)}");
        sb.AppendLine("- Each thread is one simulated CPU pinned to one core; `native (kernel)` runs the same loop on the real kernel (mmap/munmap/madvise).");
        sb.AppendLine();

        foreach (var (family, series) in Series.ByFamily(r))
        {
            Throughput(sb, family, series);
        }

        DatabaseLoadCheck(sb, r);
        Details(sb, r);
        UslSection(sb, r);
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

    private static void Throughput(StringBuilder sb, string family, List<(string Label, List<ScalingPoint> Points)> series)
    {
        string unit = series[0].Points[0].OperationUnit;
        sb.AppendLine(Inv, $"## {family}: {unit} per second");
        sb.AppendLine();
        var threads = series.SelectMany(x => x.Points).Select(p => p.Threads).Distinct().Order().ToList();
        var baseline = series.Find(x => x.Label == "mmap-lock").Points;
        sb.Append("| threads |");
        foreach (var (label, _) in series)
        {
            sb.Append(Inv, $" {label} |");
        }

        sb.AppendLine();
        sb.Append("|---:|");
        sb.Append(string.Concat(Enumerable.Repeat("---:|", series.Count)));
        sb.AppendLine();
        foreach (int n in threads)
        {
            sb.Append(Inv, $"| {n} |");
            foreach (var (label, points) in series)
            {
                ScalingPoint? p = points.Find(x => x.Threads == n);
                if (p == null)
                {
                    sb.Append(" – |");
                    continue;
                }

                string cell = $"{p.OpsPerSecond.ToString("N0", Inv)} ± {p.OpsPerSecondStdDev.ToString("N0", Inv)}";
                ScalingPoint? b = baseline?.Find(x => x.Threads == n);
                if (b != null && label != "mmap-lock" && b.OpsPerSecond > 0)
                {
                    cell += $" ({(p.OpsPerSecond / b.OpsPerSecond).ToString("0.00", Inv)}× mmap-lock)";
                }

                sb.Append(Inv, $" {cell} |");
            }

            sb.AppendLine();
        }

        sb.AppendLine();
    }

    private static void DatabaseLoadCheck(StringBuilder sb, ScalingResult r)
    {
        var withWriter = r.Points.Where(p => p.Workload == "database-load").ToList();
        var quiet = r.Points.Where(p => p.Workload == "database-load-nowriter").ToList();
        if (withWriter.Count == 0)
        {
            return;
        }

        int n = withWriter.Max(p => p.Threads);
        ScalingPoint? spec = withWriter.Find(p => p.Strategy == "speculative" && p.Threads == n);
        ScalingPoint? specQuiet = quiet.Find(p => p.Strategy == "speculative" && p.Threads == n);
        ScalingPoint? mmap = withWriter.Find(p => p.Strategy == "mmap-lock" && p.Threads == n);
        sb.AppendLine(Inv, $"## DatabaseLoad target check ({n} loader CPUs, default writer)");
        sb.AppendLine();
        if (spec == null)
        {
            sb.AppendLine("No speculative database-load point; nothing to check.");
            sb.AppendLine();
            return;
        }

        sb.AppendLine("| check | target | measured | verdict |");
        sb.AppendLine("|---|---:|---:|---|");
        if (specQuiet != null && specQuiet.OpsPerSecond > 0)
        {
            double keep = spec.OpsPerSecond / specQuiet.OpsPerSecond;
            sb.AppendLine(Inv, $"| speculative with writer / speculative without | ≥ {KeepTarget:0.0#} | {keep:0.000} | {(keep >= KeepTarget ? "met" : "missed")} |");
        }

        if (mmap != null && mmap.OpsPerSecond > 0)
        {
            double over = spec.OpsPerSecond / mmap.OpsPerSecond;
            sb.AppendLine(Inv, $"| speculative / mmap-lock, both with writer | ≥ {OverMmapLockTarget:0.0#} | {over:0.000} | {(over >= OverMmapLockTarget ? "met" : "missed")} |");
        }

        sb.AppendLine();
        sb.AppendLine(Inv, $"Writer: {spec.BackgroundOpsPerSecond:N0} ops/s under speculative, {mmap?.BackgroundOpsPerSecond.ToString("N0", Inv) ?? "–"} under mmap-lock; mmap lock held for write {Share(spec, "mmapWriteHeldShare")} (speculative) and {(mmap == null ? "–" : Share(mmap, "mmapWriteHeldShare"))} (mmap-lock) of the time.");
        sb.AppendLine();
    }

    private static void Details(StringBuilder sb, ScalingResult r)
    {
        sb.AppendLine("## Details per point");
        sb.AppendLine();
        sb.AppendLine("Speculative success = successes / attempts; aborts fall back to the mmap lock. Per-VMA lock: success/abort/retry/miss. "
            + "mmap wait: ms waited for the mmap lock per second (all CPUs). Write held: share of time the mmap lock was held for write.");
        sb.AppendLine();
        sb.AppendLine("| workload | strategy | threads | median ops/s | per-thread ops/s | spec success | top aborts | per-VMA lock | mmap wait ms/s | write held | IPIs/s | TLB hit | frames/s | writer ops/s |");
        sb.AppendLine("|---|---|---:|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (ScalingPoint p in r.Points)
        {
            string perThread = string.Join(" / ", p.PerThreadOpsPerSecond.Select(x => x.ToString("N0", Inv)));
            string success = p.SpeculativeSuccessRate is double sr ? sr.ToString("P1", Inv) : "–";
            string aborts = string.Join(", ", p.AbortReasons.Where(kv => kv.Value > 0).OrderByDescending(kv => kv.Value).Take(3).Select(kv => $"{kv.Key} {kv.Value.ToString("N0", Inv)}"));
            long vmaTotal = p.VmaLock.Values.Sum();
            string vma = vmaTotal > 0 ? string.Join("/", new[] { "success", "abort", "retry", "miss" }.Select(k => p.VmaLock.GetValueOrDefault(k).ToString("N0", Inv))) : "–";
            string tlb = p.TlbHitRate is double t ? t.ToString("P1", Inv) : "–";
            string bg = p.BackgroundOpsPerSecond > 0 ? p.BackgroundOpsPerSecond.ToString("N0", Inv) : "–";
            string mmapWait = p.Native ? "–" : p.MmapLockWaitMsPerSecond.ToString("0.0", Inv);
            string ipis = p.Native ? "–" : p.IpisPerSecond.ToString("N0", Inv);
            string frames = p.Native ? "–" : p.FramesAllocatedPerSecond.ToString("N0", Inv);
            sb.AppendLine(Inv, $"| {p.Workload} | {p.Strategy} | {p.Threads} | {p.OpsPerSecondMedian.ToString("N0", Inv)} | {perThread} | {success} | {(aborts.Length == 0 ? "–" : aborts)} | {vma} | {mmapWait} | {Share(p, "mmapWriteHeldShare")} | {ipis} | {tlb} | {frames} | {bg} |");
        }

        sb.AppendLine();
    }

    private static void UslSection(StringBuilder sb, ScalingResult r)
    {
        sb.AppendLine("## Universal Scalability Law fits");
        sb.AppendLine();
        sb.AppendLine("C(N) = N / (1 + σ(N−1) + κN(N−1)), fitted by least squares on x = N−1, y = N/C(N) − 1 (REFERENCES.md).");
        sb.AppendLine();
        sb.AppendLine("| workload | strategy | points | σ | κ | peak N | note |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---|");
        foreach (UslFit f in r.Usl)
        {
            sb.AppendLine(Inv, $"| {f.Workload} | {f.Strategy} | {f.Points} | {f.Sigma?.ToString("0.0000", Inv) ?? "–"} | {f.Kappa?.ToString("0.00000", Inv) ?? "–"} | {f.PeakThreads?.ToString("0.0", Inv) ?? "–"} | {f.Note ?? string.Empty} |");
        }

        sb.AppendLine();
    }

    private static string Share(ScalingPoint p, string key) => p.Metrics.TryGetValue(key, out double v) ? v.ToString("P1", Inv) : "–";
}
