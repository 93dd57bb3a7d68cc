using System.Globalization;
using System.Text;
using SpecVm.Mm;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// The Markdown report, written for the machine it ran on: first what the data can say (each strategy's ratio to the
/// baseline with its spread, at every thread count), then throughput per family with the kernel in its own table, the
/// target checks each with a line of context, per-point details, USL fits only where a fit is possible, and the plots.
/// Series are enumerated from the result (<see cref="Series"/>); no strategy is looked up by name. Predicted points
/// (virtual time) get tables of their own, labelled "predicted (model)" — or "predicted (validated on this machine)" for
/// thread counts within this machine's cores when a validation ran with the result — and never share a ratio or an
/// efficiency with measured points.
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

    public static string Build(ScalingResult r, IReadOnlyList<PlotFile> plots, ValidationReport? validation = null)
    {
        var sb = new StringBuilder();
        MachineInfo m = r.Machine;
        ScalingSettings s = r.Settings;
        sb.AppendLine("# SpecVm scaling report");
        sb.AppendLine();
        if (r.Partial)
        {
            sb.AppendLine("> **Partial result:** the run was interrupted; points may have fewer repeats than asked for, and some may be missing.");
            sb.AppendLine();
        }

        if (r.Runtime is { BuildConfiguration: "Debug" } && Series.HasMeasured(r))
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
        bool measured = Series.HasMeasured(r);
        ScalingSettings? predicted = Series.PredictedSettings(r);
        if (measured)
        {
            var measuredThreads = r.Points.Where(p => !Series.IsPredicted(p)).Select(p => p.Threads).Distinct().Order();
            sb.AppendLine(Inv, $"- Runs: {s.WarmupSeconds:0.###} s warm-up, {s.DurationSeconds:0.###} s measured, {s.Repeats} repeats per point (mean ± sample standard deviation, SD); threads {string.Join(", ", measuredThreads)}");
        }

        if (predicted != null)
        {
            Prediction(sb, r, predicted, validation);
        }

        if (s.KernelProfile != null)
        {
            string settings = s.KernelProfileSettings == null ? string.Empty : " (" + string.Join(", ", s.KernelProfileSettings.Select(kv => $"{kv.Key} {kv.Value}")) + ")";
            sb.AppendLine(Inv, $"- Kernel profile: {s.KernelProfile}{settings}");
        }

        if (s.TargetedShootdowns != null || s.DowngradeOnUnmap != null)
        {
            string thp = s.TransparentHugePages == "always" ? "; transparent huge pages always (2 MiB anonymous pages; docs/design.md §6)" : string.Empty;
            string layout = s.LockLayout == null ? string.Empty
                : s.LockLayout == MmLockLines.Name(LockLayout.SharedLine) ? "; lock layout shared-line (the mmap lock's count and the page-table lock on one 64-byte line: false sharing)"
                : $"; lock layout {s.LockLayout}";
            sb.AppendLine(Inv, $"- Model: targeted shootdowns {(s.TargetedShootdowns == true ? "on" : "off")}; munmap {(s.DowngradeOnUnmap == false ? "holds the mmap lock for write through the zap (4.14)" : "downgrades to read before zapping (4.20+)")}{layout}{thp}");
        }

        if (measured)
        {
            sb.AppendLine("- Measured: each thread is one simulated CPU pinned to one core; `native (kernel)` runs the same loop on the real kernel (mmap/munmap/madvise): real page faults, on its own scale, never a ratio to the model.");
        }

        sb.AppendLine();
        if (validation != null)
        {
            sb.AppendLine(Inv, $"**Validation on this machine: {(validation.Passed ? "passed" : "failed")}** ({validation.Summary}); the table is in [{ValidationReport.MarkdownFile}]({ValidationReport.MarkdownFile}).");
            sb.AppendLine();
        }

        if (r.Failures is { Count: > 0 } failures)
        {
            sb.AppendLine(Inv, $"> **{failures.Count} point{(failures.Count == 1 ? string.Empty : "s")} could not be {(failures.All(f => f.Mode == Series.PredictedMode) ? "predicted" : "run")}** and {(failures.Count == 1 ? "is" : "are")} missing from the tables and plots: {string.Join("; ", failures.Select(f => $"{f.Workload} / {f.Strategy} / {f.Threads} CPUs"))}. Why, for each, is under \"Points that failed\" below.");
            sb.AppendLine();
        }

        string? baseline = Series.Baseline(r);
        var families = Series.ByFamily(r);
        if (baseline != null)
        {
            foreach (bool mode in Modes(r))
            {
                WhatTheDataSays(sb, r, baseline, families, mode);
            }
        }

        foreach (var (family, series) in families)
        {
            Throughput(sb, r, family, series, validation);
        }

        foreach (bool mode in Modes(r))
        {
            TargetChecks(sb, r, baseline, mode);
        }

        PhysicalFloorReport.Append(sb, r);

        Details(sb, r, validation);
        WhereTheTimeGoes.Append(sb, r, validation);
        MmLocksTable.Append(sb, r, validation);
        LinesPerFault.Append(sb, r);
        foreach (bool mode in Modes(r))
        {
            UslSection(sb, r, mode);
        }

        if (predicted != null)
        {
            SimulationSpeed(sb, r);
        }

        if (r.Failures is { Count: > 0 })
        {
            sb.AppendLine("## Points that failed");
            sb.AppendLine();
            sb.AppendLine("| workload | strategy | CPUs | mode | error |");
            sb.AppendLine("|---|---|---:|---|---|");
            foreach (FailedPoint f in r.Failures)
            {
                sb.AppendLine(Inv, $"| {f.Workload} | {f.Strategy} | {f.Threads} | {f.Mode} | {f.Error.Replace("|", "\\|", StringComparison.Ordinal)} |");
            }

            sb.AppendLine();
        }
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

    /// <summary>The modes the result holds, measured first: false for measured, true for predicted.</summary>
    private static IEnumerable<bool> Modes(ScalingResult r)
    {
        if (Series.HasMeasured(r))
        {
            yield return false;
        }

        if (Series.HasPredicted(r))
        {
            yield return true;
        }
    }

    /// <summary>The header lines of a prediction: how, with what model, and what its points may be called.</summary>
    private static void Prediction(StringBuilder sb, ScalingResult r, ScalingSettings v, ValidationReport? validation)
    {
        var threads = r.Points.Where(Series.IsPredicted).Select(p => p.Threads).Distinct().Order().ToList();
        var unbanded = r.Points.Where(p => Series.IsPredicted(p) && p.PredictedLow == null).Select(p => p.Threads).Distinct().Order().ToList();
        string band = v.Band == false ? "no band"
            : "band: every uncertain constant at 0.5× and 1.5× (the range of the three runs)"
              + (unbanded.Count > 0 ? $", run at {string.Join(", ", threads.Except(unbanded))} CPUs only (not at {string.Join(", ", unbanded)}, to keep the run short)" : string.Empty);
        sb.AppendLine(Inv, $"- Predicted (virtual time, a model): cost model `{v.VirtualTimePreset ?? "?"}`; {v.WarmupSeconds * 1000:0.###} ms warm-up and {v.DurationSeconds * 1000:0.###} ms window of virtual time; quantum {v.QuantumNs?.ToString("0", Inv) ?? "?"} ns; {band}; simulated CPUs {string.Join(", ", threads)}");
        if (v.MappingMib != null || v.SliceMib != null)
        {
            sb.AppendLine(Inv, $"- Predicted workloads: page-fault mapping {v.MappingMib?.ToString(Inv) ?? "?"} MiB per round, database-load slice {v.SliceMib?.ToString(Inv) ?? "?"} MiB per loader (a virtual window lasts milliseconds: a round must reach its unmap inside it)");
        }

        if (r.PredictedSettings != null && (r.Settings.MappingMib != v.MappingMib || r.Settings.SliceMib != v.SliceMib))
        {
            sb.AppendLine(Inv, $"- **The measured points ran other sizes** (mapping {r.Settings.MappingMib?.ToString(Inv) ?? "?"} MiB, slice {r.Settings.SliceMib?.ToString(Inv) ?? "?"} MiB): where measured and predicted overlap, compare the shapes, not the values; the `validate` command runs both modes with the same sizes");
        }

        if (v.CostModel is { Source.Length: > 0 } model)
        {
            sb.AppendLine(Inv, $"- Cost model source: {model.Source}");
        }

        // Counters are read between batches: where one batch outlasts the window, both edges fall between the same two
        // batches and the counters see nothing (the throughput is pro-rated within the batch, so it still counts).
        static long Counter(ScalingPoint p, Smp.CpuCounter c) => p.Counters.GetValueOrDefault(c.ToString());
        static string Names(List<ScalingPoint> points) =>
            string.Join(", ", points.Select(p => $"{p.Workload}/{p.Strategy}/{p.Threads}").Take(12)) + (points.Count > 12 ? ", ..." : string.Empty);
        var empty = r.Points.Where(p => Series.IsPredicted(p) && p.OpsPerSecond > 0 && Counter(p, Smp.CpuCounter.Faults) == 0).ToList();
        if (empty.Count > 0)
        {
            sb.AppendLine(Inv, $"- **Counters empty** for {Names(empty)}: each CPU's batch of operations outlasts the virtual window there, so both window edges fall between the same two batches; their throughput is pro-rated within the batch and stands, but their counters (aborts, IPIs, lock waits, write-held share) say nothing. A longer `--virtual-duration-ms` fills them");
        }

        var noEdits = r.Points.Where(p => Series.IsPredicted(p) && p.Workload.StartsWith("page-fault", StringComparison.Ordinal)
            && Counter(p, Smp.CpuCounter.Faults) > 0 && Counter(p, Smp.CpuCounter.MmapWriteAcquisitions) == 0).ToList();
        if (noEdits.Count > 0)
        {
            sb.AppendLine(Inv, $"- No map or unmap fell inside the window of {Names(noEdits)}: each CPU's round of faults outlasts the virtual window there, so those points are the fault path alone (will-it-scale's 128 MiB rounds unmap once per 32,768 faults, so this is close to the real ratio; the mmap write lock's effect is in the smaller points)");
        }

        int cores = r.Machine.AllowedCores;
        sb.AppendLine(validation != null
            ? string.Create(Inv, $"- Predicted points at {cores} CPUs or fewer were checked against measurements on this machine (\"validated on this machine\", with their error); larger ones are the model alone.")
            : "- Every predicted point is the model alone (\"model\"): no validation ran with this result (the `validate` command compares predictions with measurements on this machine).");
    }

    /// <summary>The label of a predicted point: "predicted (validated on this machine, error ±x%)" or "predicted (model)".</summary>
    internal static string ModeLabel(ScalingPoint p, ValidationReport? validation)
    {
        if (!Series.IsPredicted(p))
        {
            return "measured";
        }

        return validation?.For(p) is ValidationRow row
            ? string.Create(Inv, $"predicted (validated on this machine, error {row.ErrorPercent:+0;-0}%)")
            : "predicted (model)";
    }

    private static void WhatTheDataSays(StringBuilder sb, ScalingResult r, string baseline, List<(string Family, List<SeriesData> Series)> families, bool predicted)
    {
        List<int> threads = r.Points.Where(p => Series.IsPredicted(p) == predicted).Select(p => p.Threads).Distinct().Order().ToList();
        sb.AppendLine(predicted ? "## What the model predicts" : "## What this run can say");
        sb.AppendLine();
        if (predicted)
        {
            sb.AppendLine(Inv, $"Each strategy's predicted throughput as a ratio to {baseline}'s, at each simulated CPU count. A prediction is deterministic (no spread); how far it can be trusted is the band in the throughput tables and, within this machine's cores, the validation.");
        }
        else
        {
            sb.Append(Inv, $"Each model strategy's throughput as a ratio to {baseline} (the result's first strategy) at each thread count: mean ratio ± SD ");
            sb.AppendLine("propagated from both points' repeats. \"within spread\" means the ratio is less than 2 SD from 1: this run cannot tell the two apart.");
            if (threads.Count < Usl.MinPoints)
            {
                sb.AppendLine(Inv, $"With {threads.Count} thread count{(threads.Count == 1 ? string.Empty : "s")} ({string.Join(", ", threads)}) on {r.Machine.AllowedCores} usable cores, these ratios and the 1→{threads.Max()} efficiencies below are what the data supports; scaling laws need more cores{(Series.HasPredicted(r) ? " (or the predictions below)" : string.Empty)}.");
            }
        }

        sb.AppendLine();
        foreach (var (family, all) in families)
        {
            var model = all.Where(x => !x.Kernel && x.Predicted == predicted).ToList();
            var others = model.Where(x => x.Strategy != baseline).ToList();
            var basePoints = model.Find(x => x.Strategy == baseline)?.Points;
            if (others.Count == 0 || basePoints == null)
            {
                continue;
            }

            sb.AppendLine(Inv, $"**{family}** ({(predicted ? "predicted, " : string.Empty)}ratio to {baseline})");
            sb.AppendLine();
            sb.Append(predicted ? "| CPUs |" : "| threads |");
            foreach (SeriesData o in others)
            {
                sb.Append(Inv, $" {o.Strategy} / {baseline} |");
            }

            sb.AppendLine();
            sb.AppendLine("|---:|" + string.Concat(Enumerable.Repeat("---:|", others.Count)));
            foreach (int n in threads)
            {
                ScalingPoint? b = basePoints.Find(p => p.Threads == n);
                sb.Append(Inv, $"| {n} |");
                foreach (SeriesData o in others)
                {
                    ScalingPoint? p = o.Points.Find(x => x.Threads == n);
                    if (p == null || b == null || b.OpsPerSecond <= 0 || p.OpsPerSecond <= 0)
                    {
                        sb.Append(" – |");
                        continue;
                    }

                    if (predicted)
                    {
                        sb.Append(Inv, $" {p.OpsPerSecond / b.OpsPerSecond:0.00} |");
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

    private static void Throughput(StringBuilder sb, ScalingResult r, string family, List<SeriesData> series, ValidationReport? validation)
    {
        var measured = series.Where(x => !x.Kernel && !x.Predicted).ToList();
        var predicted = series.Where(x => x.Predicted).ToList();
        var kernel = series.Where(x => x.Kernel).ToList();
        string unit = series[0].Points[0].OperationUnit;
        sb.AppendLine(Inv, $"## {family}: {unit} per second");
        sb.AppendLine();
        if (measured.Count > 0 || kernel.Count > 0)
        {
            sb.AppendLine("Mean ± SD (n repeats); efficiency X(N) / (N·X(1)) ± SD in brackets (1 = linear scaling).");
            sb.AppendLine();
        }

        if (measured.Count > 0)
        {
            Table(sb, "model, measured", measured);
        }

        if (predicted.Count > 0)
        {
            sb.AppendLine("Predicted (virtual time): the prediction with its sensitivity band [low – high] where it has one; efficiency X(N) / (N·X(1)) in brackets. Mode: \"validated on this machine\" only where a validation compared the point with a measurement here.");
            sb.AppendLine();
            PredictedTable(sb, r, predicted, validation);
        }

        if (kernel.Count > 0)
        {
            sb.AppendLine("The kernel on this machine, on its own scale (real page faults with their system-call and zeroing costs):");
            sb.AppendLine();
            Table(sb, "kernel", kernel);
        }
    }

    private static void Table(StringBuilder sb, string what, List<SeriesData> series)
    {
        var threads = series.SelectMany(x => x.Points).Select(p => p.Threads).Distinct().Order().ToList();
        sb.Append(Inv, $"| threads ({what}) |");
        foreach (SeriesData x in series)
        {
            sb.Append(Inv, $" {x.Label} |");
        }

        sb.AppendLine();
        sb.AppendLine("|---:|" + string.Concat(Enumerable.Repeat("---:|", series.Count)));
        foreach (int n in threads)
        {
            sb.Append(Inv, $"| {n} |");
            foreach (SeriesData x in series)
            {
                ScalingPoint? p = x.Points.Find(q => q.Threads == n);
                if (p == null)
                {
                    sb.Append(" – |");
                    continue;
                }

                string cell = string.Create(Inv, $"{p.OpsPerSecond:N0} ± {p.OpsPerSecondStdDev:N0} (n={Series.Repeats(p)})");
                if (n > 1 && Series.Efficiency(p, x.Points.Find(q => q.Threads == 1)) is var (e, esd))
                {
                    cell += string.Create(Inv, $" [{e:0.00} ± {esd:0.00}]");
                }

                sb.Append(Inv, $" {cell} |");
            }

            sb.AppendLine();
        }

        sb.AppendLine();
    }

    /// <summary>Predicted series: value, band and efficiency per CPU count, with the row's mode label.</summary>
    private static void PredictedTable(StringBuilder sb, ScalingResult r, List<SeriesData> series, ValidationReport? validation)
    {
        var threads = series.SelectMany(x => x.Points).Select(p => p.Threads).Distinct().Order().ToList();
        sb.Append("| CPUs (predicted) | mode |");
        foreach (SeriesData x in series)
        {
            sb.Append(Inv, $" {x.Strategy} |");
        }

        sb.AppendLine();
        sb.AppendLine("|---:|---|" + string.Concat(Enumerable.Repeat("---:|", series.Count)));
        foreach (int n in threads)
        {
            // The row's label: validated when every point of it was (a validation covers whole thread counts).
            var row = series.Select(x => x.Points.Find(q => q.Threads == n)).OfType<ScalingPoint>().ToList();
            string mode = row.Count > 0 && row.All(p => validation?.For(p) != null) ? "predicted (validated on this machine)" : "predicted (model)";
            sb.Append(Inv, $"| {n} | {mode} |");
            foreach (SeriesData x in series)
            {
                ScalingPoint? p = x.Points.Find(q => q.Threads == n);
                if (p == null)
                {
                    sb.Append(" – |");
                    continue;
                }

                string cell = p.OpsPerSecond.ToString("N0", Inv);
                if (p.PredictedLow is double lo && p.PredictedHigh is double hi)
                {
                    cell += string.Create(Inv, $" [{lo:N0} – {hi:N0}]");
                }

                ScalingPoint? one = x.Points.Find(q => q.Threads == 1);
                if (n > 1 && one is { OpsPerSecond: > 0 })
                {
                    cell += string.Create(Inv, $" ({p.OpsPerSecond / (n * one.OpsPerSecond):0.00})");
                }

                if (validation?.For(p) is ValidationRow v)
                {
                    cell += string.Create(Inv, $" (measured {v.Measured:N0}, {v.ErrorPercent:+0;-0}%)");
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
    /// Measured and predicted points are checked separately, each at its largest thread count.
    /// </summary>
    private static void TargetChecks(StringBuilder sb, ScalingResult r, string? baseline, bool predicted)
    {
        var model = r.Points.Where(p => !p.Native && Series.IsPredicted(p) == predicted).ToList();
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

            sb.AppendLine(Inv, $"## Target checks{(predicted ? " (predicted, model)" : string.Empty)}: {workload} ({n} loader CPUs, with its writer)");
            sb.AppendLine();
            sb.AppendLine(predicted ? "| check | target | predicted | verdict |" : "| check | target | measured (± SD) | verdict |");
            sb.AppendLine("|---|---:|---:|---|");
            foreach (ScalingPoint c in candidates)
            {
                ScalingPoint? q = quiet == null ? null : Find(quiet, c.Strategy);
                if (q != null && q.OpsPerSecond > 0)
                {
                    var (keep, sd) = Series.Ratio(c.OpsPerSecond, c.OpsPerSecondStdDev, q.OpsPerSecond, q.OpsPerSecondStdDev);
                    sb.AppendLine(Inv, $"| {c.Strategy} with writer / {c.Strategy} without ({quiet}) | ≥ {KeepTarget:0.0#} | {RatioCell(keep, sd, predicted)} | {CheckVerdict(keep, sd, KeepTarget)} |");
                }

                if (basePoint != null && basePoint.OpsPerSecond > 0)
                {
                    var (over, sd) = Series.Ratio(c.OpsPerSecond, c.OpsPerSecondStdDev, basePoint.OpsPerSecond, basePoint.OpsPerSecondStdDev);
                    sb.AppendLine(Inv, $"| {c.Strategy} / {baseline}, both with writer | ≥ {OverBaselineTarget:0.0#} | {RatioCell(over, sd, predicted)} | {CheckVerdict(over, sd, OverBaselineTarget)} |");
                }
            }

            sb.AppendLine();
            int cores = r.Machine.AllowedCores;
            sb.Append(Inv, $"- *Keep* compares a strategy with its own throughput without the writer: it measures what the writer's mmap-lock write holds cost the loaders. ");
            bool ownThread = model.Any(p => p.Workload == workload && p.BackgroundOpsPerSecond > 0);
            if (predicted)
            {
                sb.AppendLine(Inv, $"In virtual time every CPU, the writer's included, is a CPU of its own: no host core is shared.");
            }
            else if (ownThread)
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
                sb.AppendLine(Inv, $"The target assumes enough loaders for that queue to dominate; with {n} loader{(n == 1 ? string.Empty : "s")} it may be short{(predicted ? string.Empty : ", and run-to-run spread can exceed the difference")}.");
            }

            string writer = string.Join(", ", model.Where(p => p.Workload == workload && p.Threads == n).Select(p => string.Create(Inv, $"{WriterOps(p):N0} under {p.Strategy}")));
            sb.AppendLine(Inv, $"- Writer throughput (ops/s): {writer}; mmap lock held for write: {string.Join(", ", candidates.Select(c => $"{Share(c)} under {c.Strategy}"))}.");
            sb.AppendLine();
        }
    }

    private static string RatioCell(double value, double sd, bool predicted) =>
        predicted ? value.ToString("0.000", Inv) : string.Create(Inv, $"{value:0.000} ± {sd:0.000}");

    private static string CheckVerdict(double value, double sd, double target) =>
        Math.Abs(value - target) < 2 * sd ? (value >= target ? "met, within spread" : "missed, within spread") : value >= target ? "met" : "missed";

    private static void Details(StringBuilder sb, ScalingResult r, ValidationReport? validation)
    {
        sb.AppendLine("## Details per point");
        sb.AppendLine();
        sb.AppendLine("Success = the strategy's successes / its attempts (what each strategy declares it counts; aborts fall back to the mmap lock). "
            + "Outcomes: every outcome the strategy declares that happened, with its count, in the strategy's order. "
            + "mmap wait: ms waited for the mmap lock per second (all CPUs). Write held: share of time the mmap lock was held for write."
            + (Series.HasPredicted(r) ? " Predicted points count in virtual time (their seconds are simulated seconds)." : string.Empty));
        sb.AppendLine();
        sb.AppendLine("| workload | strategy | threads | mode | median ops/s | per-thread ops/s | success | outcomes (count) | mmap wait ms/s | write held | IPIs/s | TLB hit | frames/s | writer ops/s |");
        sb.AppendLine("|---|---|---:|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|");
        foreach (ScalingPoint p in r.Points)
        {
            string perThread = string.Join(" / ", p.PerThreadOpsPerSecond.Select(x => x.ToString("N0", Inv)));
            string success = p.SuccessRate() is double sr ? sr.ToString("P2", Inv) : "–";
            string outcomes = string.Join(", ", (p.Outcomes ?? []).Where(o => o.Count > 0).Select(o => $"{o.Name} {o.Count.ToString("N0", Inv)}"));
            string tlb = p.TlbHitRate is double t ? t.ToString("P1", Inv) : "–";
            string bg = WriterOps(p) > 0 ? WriterOps(p).ToString("N0", Inv) : "–";
            string mmapWait = p.Native ? "–" : p.MmapLockWaitMsPerSecond.ToString("0.0", Inv);
            string ipis = p.Native ? "–" : p.IpisPerSecond.ToString("N0", Inv);
            string frames = p.Native || Series.IsPredicted(p) ? "–" : p.FramesAllocatedPerSecond.ToString("N0", Inv);
            sb.AppendLine(Inv, $"| {p.Workload} | {(p.Native ? Series.KernelLabel : p.Strategy)} | {p.Threads} | {ModeLabel(p, validation)} | {p.OpsPerSecondMedian.ToString("N0", Inv)} | {perThread} | {success} | {(outcomes.Length == 0 ? "–" : outcomes)} | {mmapWait} | {Share(p)} | {ipis} | {tlb} | {frames} | {bg} |");
        }

        sb.AppendLine();
    }

    private static void UslSection(StringBuilder sb, ScalingResult r, bool predicted)
    {
        List<int> threads = r.Points.Where(p => Series.IsPredicted(p) == predicted).Select(p => p.Threads).Distinct().Order().ToList();
        bool mixed = Series.HasMeasured(r) && Series.HasPredicted(r);
        sb.AppendLine(predicted ? "## Universal Scalability Law fits (predicted)" : "## Universal Scalability Law fits");
        sb.AppendLine();
        if (threads.Count < Usl.MinPoints)
        {
            sb.AppendLine(Inv, $"None: this run {(predicted ? "predicted" : "measured")} {threads.Count} thread count{(threads.Count == 1 ? string.Empty : "s")} ({string.Join(", ", threads)}), and a fit of σ and κ needs {Usl.MinPoints} or more ({(predicted ? "more simulated CPU counts" : $"a machine with {Usl.MinPoints}+ cores, `--oversubscribe`, or `--virtual`")}).");
            sb.AppendLine();
            return;
        }

        // In a result of one mode every fit is that mode's; in a mixed one the predicted fits say so.
        var fits = r.Usl.Where(f => !mixed || (f.Mode == Series.PredictedMode) == predicted).ToList();
        var fitted = fits.Where(f => f.HasFit).ToList();
        var unfitted = fits.Where(f => !f.HasFit).ToList();
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

    /// <summary>How fast the simulation ran: host seconds and simulated faults per host second of each predicted point.</summary>
    private static void SimulationSpeed(StringBuilder sb, ScalingResult r)
    {
        var points = r.Points.Where(p => Series.IsPredicted(p) && p.Simulation != null).ToList();
        if (points.Count == 0)
        {
            return;
        }

        double Get(ScalingPoint p, string key) => p.Simulation!.GetValueOrDefault(key);
        sb.AppendLine("## Simulation speed");
        sb.AppendLine();
        sb.AppendLine(Inv, $"Host time of each predicted point's main run (the band's two extra runs not included): {points.Sum(p => Get(p, "hostSeconds")):0.0} s in all. Simulated faults per host second, by simulated CPUs (median over the points):");
        sb.AppendLine();
        sb.AppendLine("| CPUs | points | host s per point (median) | simulated faults per host s (median) | events per host s (median) |");
        sb.AppendLine("|---:|---:|---:|---:|---:|");
        foreach (var g in points.GroupBy(p => p.Threads).OrderBy(g => g.Key))
        {
            sb.AppendLine(Inv, $"| {g.Key} | {g.Count()} | {Median(g.Select(p => Get(p, "hostSeconds"))):0.000} | {Median(g.Select(p => Get(p, "simulatedFaultsPerHostSecond"))):N0} | {Median(g.Select(p => Get(p, "eventsPerHostSecond"))):N0} |");
        }

        sb.AppendLine();
    }

    private static double Median(IEnumerable<double> values)
    {
        double[] v = values.Order().ToArray();
        return v.Length == 0 ? 0 : v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
    }

    /// <summary>The writer's operations per second: its own thread's, or those it ran on a loader's CPU.</summary>
    private static double WriterOps(ScalingPoint p) =>
        p.BackgroundOpsPerSecond > 0 ? p.BackgroundOpsPerSecond : p.Metrics.GetValueOrDefault(InterleavedWriterMetric);

    private static string Share(ScalingPoint p) => p.Metrics.TryGetValue(WriteHeldMetric, out double v) ? v.ToString("P1", Inv) : "–";
}
