using System.Globalization;
using System.Runtime.InteropServices;
using SpecVm.Benchmarks.Reports;
using SpecVm.Mm;
using SpecVm.Scaling;
using Spectre.Console;

namespace SpecVm.Benchmarks.Cli;

/// <summary>Runs a scaling experiment with live progress and writes the report.</summary>
/// <remarks>
/// Ctrl-C (SIGINT) or SIGTERM does not kill the process: it cancels the experiment, which stops at the next run
/// boundary; the points measured so far are written, marked partial, the progress display ends normally (so the
/// terminal cursor comes back), and the exit code is 130 (128 + SIGINT), as a shell expects of an interrupted job;
/// SIGTERM is treated the same (also 130). A second signal is left to the runtime's default (terminate). Runs are
/// interleaved across points (every point once, then every point again), so the boundary is a run: an interrupted
/// result may hold every point with fewer repeats than asked, which <c>compare</c>'s intervals take into account.
/// </remarks>
internal static class ScaleRunner
{
    /// <summary>Shows the terminal cursor (DECTCEM), in case a progress display hid it and was cut short.</summary>
    private const string ShowCursor = "\u001b[?25h";

    public static int Run(ScaleSettings s)
    {
        RuntimeSettings runtime = MachineInfoProbe.CollectRuntime();
        if (s.DryRun)
        {
            var plan = new ScalingExperiment(Options(s, null));
            Console.WriteLine($"dry run: {Header(s, plan)}; {runtime.BuildConfiguration} build; would write {s.OutDir}");
            WarnAboutPlacement(s, plan);
            return ExitCodes.Ok;
        }

        if (!runtime.JitOptimized)
        {
            if (!s.AllowDebug)
            {
                throw new UsageException($"this is a {runtime.BuildConfiguration} build (unoptimised JIT, about 3x slower); rebuild with -c Release, or pass --allow-debug to measure it anyway.");
            }

            Console.Error.WriteLine($"warning: measuring a {runtime.BuildConfiguration} build (unoptimised JIT, about 3x slower than Release); results.json records it.");
        }

        // Fail early on an unwritable output directory, not after minutes of measuring.
        ScaleOptions.EnsureWritable(s.OutDir);
        using var interrupt = new CancellationTokenSource();
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => OnSignal(c, interrupt));
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => OnSignal(c, interrupt));
        try
        {
            return Measure(s, interrupt.Token);
        }
        finally
        {
            if (!Console.IsOutputRedirected)
            {
                Console.Out.Write(ShowCursor);
            }
        }
    }

    private static void OnSignal(PosixSignalContext context, CancellationTokenSource interrupt)
    {
        if (interrupt.IsCancellationRequested)
        {
            return; // The second signal: let the runtime terminate the process.
        }

        context.Cancel = true;
        Console.Error.WriteLine("interrupted: stopping after the current run; the points measured so far will be written (marked partial).");
        interrupt.Cancel();
    }

    private static ScalingOptions Options(ScaleSettings s, IProgress<ScalingProgress>? progress) => new()
    {
        Workloads = [.. s.Workloads],
        Strategies = [.. s.Strategies],
        ThreadCounts = [.. s.Threads],
        Warmup = s.Warmup,
        Duration = s.Duration,
        Repeats = s.Repeats,
        Oversubscribe = s.Oversubscribe,
        Verify = s.Verify,
        AddressSpaceOptions = new AddressSpaceOptions { TargetedShootdowns = s.TargetedShootdowns, DowngradeOnUnmap = s.DowngradeOnUnmap },
        Progress = progress,
    };

    private static string Header(ScaleSettings s, ScalingExperiment experiment)
    {
        // 0.3 s per run: an allowance for building, prefaulting and tearing down each run's machine.
        double perRun = s.Warmup.TotalSeconds + s.Duration.TotalSeconds + 0.3;
        return $"SpecVm scaling: {experiment.TotalRuns} runs, about {TimeSpan.FromSeconds(experiment.TotalRuns * perRun):m\\:ss}; "
            + $"workloads {string.Join(", ", s.Workloads.Select(w => w.Name))}; strategies {string.Join(", ", s.Strategies.Select(x => x.Name))}; threads {string.Join(",", s.Threads)}";
    }

    private static int Measure(ScaleSettings s, CancellationToken cancellationToken)
    {
        var forward = new ForwardingProgress();
        var experiment = new ScalingExperiment(Options(s, forward));
        string header = Header(s, experiment);
        IReadOnlyList<string> placement = WarnAboutPlacement(s, experiment);
        ScalingResult result;
        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            Console.WriteLine(header);
            forward.Target = new PlainProgress();
            result = experiment.Run(cancellationToken);
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
                    result = experiment.Run(cancellationToken);
                    task.Description = result.Partial ? "interrupted" : "done";
                });
        }

        if (result.Points.Count == 0)
        {
            Console.Error.WriteLine("interrupted before any run finished: nothing measured, nothing written.");
            return ExitCodes.Interrupted;
        }

        result.Settings.MappingMib = s.MappingMib;
        result.Settings.SliceMib = s.SliceMib;
        result.Settings.WriterOpsPerSecond = s.WriterOpsPerSecond;
        result.Warnings.AddRange(placement.Except(result.Warnings)); // The experiment records them too (library users).
        string dir = ReportWriter.WriteAll(result, s.OutDir);
        Summary(result);
        Console.WriteLine($"Results written to {Path.GetFullPath(dir)}");
        Console.WriteLine($"  report: {Path.Combine(dir, ReportWriter.MarkdownFile)}");
        if (result.Partial)
        {
            Console.Error.WriteLine($"interrupted: partial result ({result.Points.Count} points, some with fewer than {s.Repeats} repeats) written to {Path.GetFullPath(dir)}");
            return ExitCodes.Interrupted;
        }

        return ExitCodes.Ok;
    }

    /// <summary>
    /// Says on stderr, before measuring, where CPU threads would share a core or an SMT core (<see cref="PlacementCheck"/>);
    /// returns the lines for results.json.
    /// </summary>
    private static IReadOnlyList<string> WarnAboutPlacement(ScaleSettings s, ScalingExperiment experiment)
    {
        IReadOnlyList<string> warnings = PlacementCheck.Warnings(s.Workloads, experiment.ThreadCounts);
        foreach (string w in warnings)
        {
            Console.Error.WriteLine($"warning: {w}");
        }

        return warnings;
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
