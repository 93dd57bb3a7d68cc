using System.Globalization;
using SpecVm.Scaling;
using Spectre.Console;

namespace SpecVm.Benchmarks.Cli;

/// <summary>The <c>compare</c> command: two results side by side with B/A ratios.</summary>
internal static class CompareRunner
{
    public static int Run(string a, string b)
    {
        ScalingResult baseline = Load(a);
        ScalingResult candidate = Load(b);
        IReadOnlyList<ComparisonRow> rows = ResultComparer.Compare(baseline, candidate);
        Console.WriteLine($"A: {a} ({baseline.Machine.CpuModel}, {baseline.Machine.AllowedCores} cores, commit {Short(baseline.Machine.GitCommit)}, {baseline.CreatedUtc:u})");
        Console.WriteLine($"B: {b} ({candidate.Machine.CpuModel}, {candidate.Machine.AllowedCores} cores, commit {Short(candidate.Machine.GitCommit)}, {candidate.CreatedUtc:u})");
        if (Console.IsOutputRedirected)
        {
            Console.WriteLine($"{"workload",-30} {"strategy",-14} {"threads",7} {"A ops/s",14} {"B ops/s",14} {"B/A",7}");
            foreach (ComparisonRow r in rows)
            {
                Console.WriteLine($"{r.Workload,-30} {r.Strategy,-14} {r.Threads,7} {Num(r.BaselineOpsPerSecond),14} {Num(r.CandidateOpsPerSecond),14} {Ratio(r.Ratio),7}");
            }
        }
        else
        {
            var table = new Table().AddColumns("workload", "strategy", "threads", "A ops/s", "B ops/s", "B/A");
            foreach (ComparisonRow r in rows)
            {
                string ratio = r.Ratio is double x ? (x >= 1.05 ? $"[green]{Ratio(x)}[/]" : x <= 0.95 ? $"[red]{Ratio(x)}[/]" : Ratio(x)) : "-";
                table.AddRow(Markup.Escape(r.Workload), Markup.Escape(r.Strategy), r.Threads.ToString(CultureInfo.InvariantCulture), Num(r.BaselineOpsPerSecond), Num(r.CandidateOpsPerSecond), ratio);
            }

            AnsiConsole.Write(table);
        }

        double? geo = ResultComparer.GeometricMeanRatio(rows);
        Console.WriteLine(geo is double g ? $"Geometric mean B/A over {rows.Count(r => r.Ratio != null)} common points: {Ratio(g)}" : "No common points to compare.");
        return ExitCodes.Ok;
    }

    private static ScalingResult Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, Reports.ReportWriter.JsonFile) : path;
        try
        {
            return ScalingResult.Load(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new UsageException($"cannot read result '{path}': {e.Message}");
        }
    }

    private static string Short(string? commit) => commit is { Length: >= 10 } c ? c[..10] : commit ?? "unknown";

    private static string Num(double? v) => v is double x ? x.ToString("N0", CultureInfo.InvariantCulture) : "-";

    private static string Ratio(double? v) => v is double x ? x.ToString("0.00", CultureInfo.InvariantCulture) + "x" : "-";
}
