using System.Globalization;
using SpecVm.Benchmarks.Reports;
using SpecVm.Scaling;
using Spectre.Console;

namespace SpecVm.Benchmarks.Cli;

/// <summary>
/// The <c>compare</c> command: two results side by side, each ratio B/A with a confidence interval from the repeats,
/// a difference claimed (and coloured) only when the interval excludes 1.
/// </summary>
/// <remarks>
/// Results measured differently (settings, build, time mode) are refused unless <c>--force</c>: their ratios would
/// compare two experiments, not two builds. A different machine is only a warning. With
/// <c>--fail-on-regression P</c>, the exit code is <see cref="ExitCodes.Regression"/> when some point's whole interval
/// lies below 1 - P/100, which a CI job can gate on.
/// </remarks>
internal static class CompareRunner
{
    public static int Run(string a, string b, bool force, double? failOnRegressionPercent)
    {
        if (failOnRegressionPercent is double p && (!(p > 0) || p >= 100))
        {
            throw new UsageException($"--fail-on-regression must be a percentage between 0 and 100 (got {p.ToString(CultureInfo.InvariantCulture)}).");
        }

        ScalingResult baseline = Load(a, "baseline");
        ScalingResult candidate = Load(b, "candidate");
        Console.WriteLine($"A: {a} ({Describe(baseline)})");
        Console.WriteLine($"B: {b} ({Describe(candidate)})");
        foreach ((string name, ScalingResult r) in new[] { ("A", baseline), ("B", candidate) })
        {
            if (r.Partial)
            {
                Console.Error.WriteLine($"warning: {name} is a partial (interrupted) result.");
            }

            if (r.Runtime is { JitOptimized: false } rt && Series.HasMeasured(r))
            {
                Console.Error.WriteLine($"warning: {name} was measured in a {rt.BuildConfiguration} build (unoptimised JIT).");
            }

            if (r.SchemaVersion < 2)
            {
                Console.Error.WriteLine($"note: {name} is schema version {r.SchemaVersion}: it does not record its build, runtime or workload options, so they cannot be checked.");
            }
        }

        // Which modes to put side by side: each mode both results hold with itself; with no mode in common, a measurement
        // against a prediction (one side is a model).
        var pairs = ModePairs(baseline, candidate);
        var sections = new List<(bool APredicted, bool BPredicted, ScalingResult A, ScalingResult B)>();
        int blocking = 0;
        foreach ((bool ap, bool bp) in pairs)
        {
            ScalingResult sa = Only(baseline, ap), sb = Only(candidate, bp);
            string prefix = pairs.Count > 1 ? $"{ModeWord(ap)} points: " : string.Empty;
            foreach (ResultIdentity.Difference d in ResultIdentity.Compare(sa, sb))
            {
                string note = d.Blocking ? string.Empty : $" ({d.Note ?? (d.What.StartsWith("settings.", StringComparison.Ordinal) ? "a model variant" : "a different machine")}: compared anyway)";
                Console.Error.WriteLine($"warning: {prefix}{d.What} differs: A {d.Baseline}, B {d.Candidate}{note}");
                blocking += d.Blocking ? 1 : 0;
            }

            sections.Add((ap, bp, sa, sb));
        }

        if (blocking > 0 && !force)
        {
            throw new UsageException($"A and B were measured differently ({blocking} setting(s) above); pass --force to compare them anyway.");
        }

        var regressed = new List<(ComparisonRow Row, RatioInterval Interval)>();
        foreach (var (ap, bp, sa, sb) in sections)
        {
            if (sections.Count > 1 || ap || bp)
            {
                Console.WriteLine();
                Console.WriteLine(ap == bp
                    ? $"{ModeWord(ap)} (A) against {ModeWord(bp)} (B){(ap ? ": two predictions, deterministic, so no intervals; a ratio other than 1 is a difference between the models or the code" : string.Empty)}"
                    : $"{ModeWord(ap)} (A) against {ModeWord(bp)} (B): {ResultIdentity.ModelNote}; the interval is the predicted side's band over the measured mean");
            }

            IReadOnlyList<ComparisonRow> rows = ResultComparer.Compare(sa, sb);
            var intervals = rows.ToDictionary(r => r, r => Interval(r, sa, sb));
            Print(rows, intervals, sa, sb, ap || bp);

            double? geo = ResultComparer.GeometricMeanRatio(rows);
            if (ap || bp)
            {
                Console.WriteLine(geo is double gm
                    ? $"{rows.Count(r => r.Ratio != null)} common points; geometric mean B/A {Ratio(gm)} ({(ap && bp ? "model against model" : "model against measurement")}: no faster/slower verdicts)"
                    : "No common points to compare.");
                continue;
            }

            int faster = intervals.Values.Count(i => i?.Verdict == RatioVerdict.Faster);
            int slower = intervals.Values.Count(i => i?.Verdict == RatioVerdict.Slower);
            int same = intervals.Values.Count(i => i?.Verdict == RatioVerdict.NoDifference);
            int unknown = rows.Count(r => r.Ratio != null && intervals[r] == null);
            Console.WriteLine(geo is double g
                ? $"{rows.Count(r => r.Ratio != null)} common points: {faster} faster, {slower} slower, {same} no clear difference (95% interval contains 1), {unknown} without an interval (fewer than 2 repeats); geometric mean B/A {Ratio(g)}"
                : "No common points to compare.");
            if (failOnRegressionPercent is double t)
            {
                double lim = 1 - (t / 100);
                regressed.AddRange(rows.Where(r => intervals[r] is RatioInterval i && i.Upper < lim).Select(r => (r, intervals[r]!)));
            }
        }

        if (failOnRegressionPercent is double threshold)
        {
            // The gate reads measured points only: a prediction has no repeats to put an interval on.
            double limit = 1 - (threshold / 100);
            if (regressed.Count > 0)
            {
                foreach (var (r, i) in regressed)
                {
                    Console.Error.WriteLine($"regression: {r.Workload} / {r.Strategy} / {r.Threads} threads: B/A {Interval(i)}, wholly below {Ratio(limit)}");
                }

                Console.Error.WriteLine($"FAIL: {regressed.Count} point(s) regressed by more than {threshold.ToString(CultureInfo.InvariantCulture)}% (whole 95% interval below {Ratio(limit)}).");
                return ExitCodes.Regression;
            }

            Console.WriteLine($"PASS: no point's 95% interval lies wholly below {Ratio(limit)} (--fail-on-regression {threshold.ToString(CultureInfo.InvariantCulture)}).");
        }

        return ExitCodes.Ok;
    }

    /// <summary>The (A predicted, B predicted) pairs to compare: every mode both hold, or, with none in common, A's against B's.</summary>
    private static List<(bool A, bool B)> ModePairs(ScalingResult a, ScalingResult b)
    {
        bool[] modesA = Modes(a), modesB = Modes(b);
        var common = modesA.Intersect(modesB).Select(m => (m, m)).ToList();
        return common.Count > 0 ? common : [(modesA.FirstOrDefault(), modesB.FirstOrDefault())];
    }

    private static bool[] Modes(ScalingResult r) => r.Points.Select(Series.IsPredicted).Distinct().Order().ToArray();

    private static string ModeWord(bool predicted) => predicted ? "predicted" : "measured";

    /// <summary>The points of one mode, with the settings they were run with (for a result holding both modes).</summary>
    private static ScalingResult Only(ScalingResult r, bool predicted) => new()
    {
        SchemaVersion = r.SchemaVersion,
        Partial = r.Partial,
        CreatedUtc = r.CreatedUtc,
        Machine = r.Machine,
        Runtime = r.Runtime,
        Settings = predicted ? Series.PredictedSettings(r)! : r.Settings,
        Points = r.Points.Where(p => Series.IsPredicted(p) == predicted).ToList(),
    };

    /// <summary>
    /// The interval of B/A: Welch's from the repeats of two measurements; against or between predictions, the band
    /// (low to high) of the predicted side(s) over the other's mean — a range, with no verdict.
    /// </summary>
    private static RatioInterval? Interval(ComparisonRow row, ScalingResult a, ScalingResult b)
    {
        ScalingPoint? pa = a.Find(row.Workload, row.Strategy, row.Threads), pb = b.Find(row.Workload, row.Strategy, row.Threads);
        if (pa == null || pb == null)
        {
            return null;
        }

        if (!Series.IsPredicted(pa) && !Series.IsPredicted(pb))
        {
            return RatioInterval.Of(pa.RepeatOpsPerSecond, pb.RepeatOpsPerSecond);
        }

        double aLow = pa.PredictedLow ?? pa.OpsPerSecond, aHigh = pa.PredictedHigh ?? pa.OpsPerSecond;
        double bLow = pb.PredictedLow ?? pb.OpsPerSecond, bHigh = pb.PredictedHigh ?? pb.OpsPerSecond;
        return aLow > 0 && aHigh > 0 && pa.OpsPerSecond > 0 ? new RatioInterval(pb.OpsPerSecond / pa.OpsPerSecond, bLow / aHigh, bHigh / aLow) : null;
    }

    private static void Print(IReadOnlyList<ComparisonRow> rows, Dictionary<ComparisonRow, RatioInterval?> intervals, ScalingResult a, ScalingResult b, bool model)
    {
        // Throughput with its relative standard deviation over the repeats, e.g. "1,550,220 ±35%".
        string Throughput(ScalingResult r, ComparisonRow row) =>
            r.Find(row.Workload, row.Strategy, row.Threads) is not ScalingPoint p ? "-"
            : p.OpsPerSecond > 0 && p.RepeatOpsPerSecond.Count > 1
                ? string.Create(CultureInfo.InvariantCulture, $"{p.OpsPerSecond:N0} ±{p.OpsPerSecondStdDev / p.OpsPerSecond * 100:0}%")
                : Num(p.OpsPerSecond);
        string RatioText(ComparisonRow r) => intervals[r] is RatioInterval i ? $"{Ratio(r.Ratio)} {Interval(i)}" : Ratio(r.Ratio);
        string Verdict(RatioInterval? i) => model ? (i == null ? "?" : "model") : i?.Verdict switch
        {
            RatioVerdict.Faster => "faster",
            RatioVerdict.Slower => "slower",
            RatioVerdict.NoDifference => "~",
            _ => "?",
        };

        if (Console.IsOutputRedirected)
        {
            Console.WriteLine($"{"workload",-30} {"strategy",-14} {"threads",7} {"A ops/s",16} {"B ops/s",16} {"B/A [95% CI]",-20} verdict");
            foreach (ComparisonRow r in rows)
            {
                Console.WriteLine($"{r.Workload,-30} {r.Strategy,-14} {r.Threads,7} {Throughput(a, r),16} {Throughput(b, r),16} {RatioText(r),-20} {Verdict(intervals[r])}");
            }

            return;
        }

        var table = new Table().AddColumns("workload", "strategy", "threads", "A ops/s ±sd", "B ops/s ±sd", Markup.Escape("B/A [95% CI]"), "verdict");
        foreach (ComparisonRow r in rows)
        {
            RatioInterval? i = intervals[r];
            string colour = model ? string.Empty : i?.Verdict switch { RatioVerdict.Faster => "green", RatioVerdict.Slower => "red", _ => string.Empty };
            string Paint(string text) => colour.Length == 0 ? Markup.Escape(text) : $"[{colour}]{Markup.Escape(text)}[/]";
            table.AddRow(
                Markup.Escape(r.Workload),
                Markup.Escape(r.Strategy),
                r.Threads.ToString(CultureInfo.InvariantCulture),
                Throughput(a, r),
                Throughput(b, r),
                Paint(RatioText(r)),
                Paint(Verdict(i)));
        }

        AnsiConsole.Write(table);
        Console.WriteLine(model
            ? "± sd: standard deviation over the repeats (measured side); B/A [range]: the predicted side's band; \"model\": a prediction is involved, so no faster/slower verdict."
            : "± sd: standard deviation over the repeats; B/A [95% CI]: Welch's t interval on log throughput; a point is faster or slower only when its interval excludes 1 (~: no clear difference, ?: fewer than 2 repeats).");
    }

    private static string Describe(ScalingResult r)
    {
        MachineInfo m = r.Machine;
        string build = r.Runtime is RuntimeSettings rt ? $", {rt.BuildConfiguration}" : string.Empty;
        return string.Create(CultureInfo.InvariantCulture,
            $"{m.CpuModel}, {m.AllowedCores} cores{build}, {r.Settings.DurationSeconds} s x {r.Settings.Repeats}, commit {Short(m.GitCommit)}, {r.CreatedUtc:u}{(r.Partial ? ", PARTIAL" : string.Empty)}");
    }

    private static ScalingResult Load(string path, string argument)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, Reports.ReportWriter.JsonFile) : path;
        try
        {
            return ScalingResult.Load(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new UsageException($"{argument} '{path}': cannot read a result ({e.Message})");
        }
    }

    private static string Short(string? commit) => commit is { Length: >= 10 } c ? c[..10] : commit ?? "unknown";

    private static string Num(double? v) => v is double x ? x.ToString("N0", CultureInfo.InvariantCulture) : "-";

    private static string Ratio(double? v) => v is double x ? x.ToString("0.00", CultureInfo.InvariantCulture) + "x" : "-";

    private static string Interval(RatioInterval i) => string.Create(CultureInfo.InvariantCulture, $"[{i.Lower:0.00}, {i.Upper:0.00}]");
}
