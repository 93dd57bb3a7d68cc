using System.Globalization;
using SpecVm.Benchmarks.Reports;
using SpecVm.Scaling;
using Spectre.Console;

namespace SpecVm.Benchmarks.Cli;

/// <summary>Runs a scaling experiment with live progress and writes the report.</summary>
internal static class ScaleRunner
{
    public static int Run(ScaleSettings s)
    {
        var forward = new ForwardingProgress();
        var experiment = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [.. s.Workloads],
            Strategies = [.. s.Strategies],
            ThreadCounts = [.. s.Threads],
            Warmup = s.Warmup,
            Duration = s.Duration,
            Repeats = s.Repeats,
            Oversubscribe = s.Oversubscribe,
            Verify = s.Verify,
            Progress = forward,
        });

        // Fail early on an unwritable output directory, not after minutes of measuring.
        Directory.CreateDirectory(s.OutDir);
        double perRun = s.Warmup.TotalSeconds + s.Duration.TotalSeconds + 0.3;
        string header = $"SpecVm scaling: {experiment.TotalRuns} runs, about {TimeSpan.FromSeconds(experiment.TotalRuns * perRun):m\\:ss}; "
            + $"workloads {string.Join(", ", s.Workloads.Select(w => w.Name))}; strategies {string.Join(", ", s.Strategies.Select(x => x.Name))}; threads {string.Join(",", s.Threads)}";
        ScalingResult result;
        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            Console.WriteLine(header);
            forward.Target = new PlainProgress();
            result = experiment.Run();
        }
        else
        {
            AnsiConsole.MarkupLine(Markup.Escape(header));
            result = null!;
            AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    ProgressTask task = ctx.AddTask("starting", maxValue: experiment.TotalRuns);
                    forward.Target = new SpectreProgress(task);
                    result = experiment.Run();
                    task.Description = "done";
                });
        }

        string dir = ReportWriter.WriteAll(result, s.OutDir);
        Summary(result);
        Console.WriteLine($"Results written to {Path.GetFullPath(dir)}");
        Console.WriteLine($"  report: {Path.Combine(dir, ReportWriter.MarkdownFile)}");
        return ExitCodes.Ok;
    }

    private static void Summary(ScalingResult r)
    {
        if (Console.IsOutputRedirected)
        {
            foreach (ScalingPoint p in r.Points)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{p.Workload,-30} {p.Strategy,-14} {p.Threads,3}  {p.OpsPerSecond,14:N0} ops/s ± {p.OpsPerSecondStdDev:N0}"));
            }

            return;
        }

        var table = new Table().AddColumns("workload", "strategy", "threads", "ops/s", "± sd", "spec success");
        foreach (ScalingPoint p in r.Points)
        {
            table.AddRow(
                p.Workload,
                p.Strategy,
                p.Threads.ToString(CultureInfo.InvariantCulture),
                p.OpsPerSecond.ToString("N0", CultureInfo.InvariantCulture),
                p.OpsPerSecondStdDev.ToString("N0", CultureInfo.InvariantCulture),
                p.SpeculativeSuccessRate is double sr ? sr.ToString("P1", CultureInfo.InvariantCulture) : "-");
        }

        AnsiConsole.Write(table);
    }

    /// <summary>Reports synchronously on the experiment's thread (System.Progress would post to the thread pool).</summary>
    private sealed class PlainProgress : IProgress<ScalingProgress>
    {
        public void Report(ScalingProgress value)
        {
            if (value.Message.Contains("ops/s", StringComparison.Ordinal))
            {
                Console.WriteLine($"[{value.Completed}/{value.Total}] {value.Message}");
            }
        }
    }

    private sealed class ForwardingProgress : IProgress<ScalingProgress>
    {
        public IProgress<ScalingProgress>? Target { get; set; }

        public void Report(ScalingProgress value) => Target?.Report(value);
    }

    private sealed class SpectreProgress(ProgressTask task) : IProgress<ScalingProgress>
    {
        public void Report(ScalingProgress value)
        {
            task.Value = value.Completed;
            task.Description = Markup.Escape(value.Message);
        }
    }
}
