using System.Globalization;
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

        IReadOnlyList<ResultIdentity.Difference> differences = ResultIdentity.Compare(baseline, candidate);
        foreach (ResultIdentity.Difference d in differences)
        {
            Console.Error.WriteLine($"warning: {d.What} differs: A {d.Baseline}, B {d.Candidate}{(d.Blocking ? string.Empty : d.What.StartsWith("settings.", StringComparison.Ordinal) ? " (a model variant: compared anyway)" : " (a different machine: compared anyway)")}");
        }

        foreach ((string name, ScalingResult r) in new[] { ("A", baseline), ("B", candidate) })
        {
            if (r.Partial)
            {
                Console.Error.WriteLine($"warning: {name} is a partial (interrupted) result.");
            }

            if (r.Runtime is { JitOptimized: false } rt)
            {
                Console.Error.WriteLine($"warning: {name} was measured in a {rt.BuildConfiguration} build (unoptimised JIT).");
            }

            if (r.SchemaVersion < 2)
            {
                Console.Error.WriteLine($"note: {name} is schema version {r.SchemaVersion}: it does not record its build, runtime or workload options, so they cannot be checked.");
            }
        }

        int blocking = differences.Count(d => d.Blocking);
        if (blocking > 0 && !force)
        {
            throw new UsageException($"A and B were measured differently ({blocking} setting(s) above); pass --force to compare them anyway.");
        }

        IReadOnlyList<ComparisonRow> rows = ResultComparer.Compare(baseline, candidate);
        var intervals = rows.ToDictionary(r => r, r => Interval(r, baseline, candidate));
        Print(rows, intervals, baseline, candidate);

        double? geo = ResultComparer.GeometricMeanRatio(rows);
        int faster = intervals.Values.Count(i => i?.Verdict == RatioVerdict.Faster);
        int slower = intervals.Values.Count(i => i?.Verdict == RatioVerdict.Slower);
        int same = intervals.Values.Count(i => i?.Verdict == RatioVerdict.NoDifference);
        int unknown = rows.Count(r => r.Ratio != null && intervals[r] == null);
        Console.WriteLine(geo is double g
            ? $"{rows.Count(r => r.Ratio != null)} common points: {faster} faster, {slower} slower, {same} no clear difference (95% interval contains 1), {unknown} without an interval (fewer than 2 repeats); geometric mean B/A {Ratio(g)}"
            : "No common points to compare.");

        if (failOnRegressionPercent is double threshold)
        {
            double limit = 1 - (threshold / 100);
            var regressed = rows.Where(r => intervals[r] is RatioInterval i && i.Upper < limit).ToList();
            if (regressed.Count > 0)
            {
                foreach (ComparisonRow r in regressed)
                {
                    Console.Error.WriteLine($"regression: {r.Workload} / {r.Strategy} / {r.Threads} threads: B/A {Interval(intervals[r]!)}, wholly below {Ratio(limit)}");
                }

                Console.Error.WriteLine($"FAIL: {regressed.Count} point(s) regressed by more than {threshold.ToString(CultureInfo.InvariantCulture)}% (whole 95% interval below {Ratio(limit)}).");
                return ExitCodes.Regression;
            }

            Console.WriteLine($"PASS: no point's 95% interval lies wholly below {Ratio(limit)} (--fail-on-regression {threshold.ToString(CultureInfo.InvariantCulture)}).");
        }

        return ExitCodes.Ok;
    }

    private static RatioInterval? Interval(ComparisonRow row, ScalingResult a, ScalingResult b)
    {
        ScalingPoint? pa = a.Find(row.Workload, row.Strategy, row.Threads), pb = b.Find(row.Workload, row.Strategy, row.Threads);
        return pa == null || pb == null ? null : RatioInterval.Of(pa.RepeatOpsPerSecond, pb.RepeatOpsPerSecond);
    }

    private static void Print(IReadOnlyList<ComparisonRow> rows, Dictionary<ComparisonRow, RatioInterval?> intervals, ScalingResult a, ScalingResult b)
    {
        // Throughput with its relative standard deviation over the repeats, e.g. "1,550,220 ±35%".
        string Throughput(ScalingResult r, ComparisonRow row) =>
            r.Find(row.Workload, row.Strategy, row.Threads) is not ScalingPoint p ? "-"
            : p.OpsPerSecond > 0 && p.RepeatOpsPerSecond.Count > 1
                ? string.Create(CultureInfo.InvariantCulture, $"{p.OpsPerSecond:N0} ±{p.OpsPerSecondStdDev / p.OpsPerSecond * 100:0}%")
                : Num(p.OpsPerSecond);
        string RatioText(ComparisonRow r) => intervals[r] is RatioInterval i ? $"{Ratio(r.Ratio)} {Interval(i)}" : Ratio(r.Ratio);
        string Verdict(RatioInterval? i) => i?.Verdict switch
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
            string colour = i?.Verdict switch { RatioVerdict.Faster => "green", RatioVerdict.Slower => "red", _ => string.Empty };
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
        Console.WriteLine("± sd: standard deviation over the repeats; B/A [95% CI]: Welch's t interval on log throughput; a point is faster or slower only when its interval excludes 1 (~: no clear difference, ?: fewer than 2 repeats).");
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
