using System.Globalization;
using System.Runtime.InteropServices;
using SpecVm.Benchmarks.Reports;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Workloads;
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

        CheckBuild(s, runtime);

        // Fail early on an unwritable output directory, not after minutes of measuring.
        ScaleOptions.EnsureWritable(s.OutDir);
        return WithInterrupt(token =>
        {
            ScalingResult? result = Execute(s, token);
            if (result == null)
            {
                Console.Error.WriteLine("interrupted before any run finished: nothing measured, nothing written.");
                return ExitCodes.Interrupted;
            }

            Record(result.Settings, s);
            return Write(result, s.OutDir, s.Repeats);
        });
    }

    /// <summary>
    /// Refuses to measure with an unoptimised build unless <c>--allow-debug</c>. Predictions are exempt: virtual time
    /// never reads the host's clock, so a Debug build predicts exactly what a Release build does, only slower.
    /// </summary>
    internal static void CheckBuild(ScaleSettings s, RuntimeSettings runtime)
    {
        if (s.VirtualTime != null || runtime.JitOptimized)
        {
            return;
        }

        if (!s.AllowDebug)
        {
            throw new UsageException($"this is a {runtime.BuildConfiguration} build (unoptimised JIT, about 3x slower); rebuild with -c Release, or pass --allow-debug to measure it anyway.");
        }

        Console.Error.WriteLine($"warning: measuring a {runtime.BuildConfiguration} build (unoptimised JIT, about 3x slower than Release); results.json records it.");
    }

    /// <summary>Runs <paramref name="body"/> with Ctrl-C and SIGTERM turned into a cancellation (see the remarks above).</summary>
    internal static int WithInterrupt(Func<CancellationToken, int> body)
    {
        using var interrupt = new CancellationTokenSource();
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => OnSignal(c, interrupt));
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => OnSignal(c, interrupt));
        try
        {
            return body(interrupt.Token);
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

    /// <summary>The kernel profile's address-space options with the command line's model switches on top.</summary>
    private static AddressSpaceOptions AddressSpaceOptionsOf(ScaleSettings s)
    {
        AddressSpaceOptions o = s.Kernel.CreateAddressSpaceOptions();
        o.TargetedShootdowns = s.TargetedShootdowns;
        o.DowngradeOnUnmap = s.DowngradeOnUnmap;
        o.LockLayout = s.LockLayout;
        o.TransparentHugePages = s.TransparentHugePages;
        return o;
    }

    internal static ScalingOptions Options(ScaleSettings s, IProgress<ScalingProgress>? progress) => new()
    {
        Workloads = [.. s.Workloads],
        Strategies = [.. s.Strategies],
        ThreadCounts = [.. s.Threads],
        Warmup = s.Warmup,
        Duration = s.Duration,
        Repeats = s.Repeats,
        Oversubscribe = s.Oversubscribe,
        Verify = s.Verify,
        AddressSpaceOptions = AddressSpaceOptionsOf(s),
        KernelProfile = s.Kernel,
        VirtualTime = s.VirtualTime,
        MeasureFloor = s.MeasureFloor,
        Progress = progress,
    };

    /// <summary>
    /// Host seconds per simulated CPU per millisecond of virtual time, for the plan's estimate: host time grows with the
    /// CPUs simulated (0.02-0.03 s per CPU per ms, band runs included, in Release on a 2-core machine with other work on it).
    /// </summary>
    private const double HostSecondsPerCpuMs = 0.025;

    internal static string Header(ScaleSettings s, ScalingExperiment experiment)
    {
        string what = string.Join(", ", s.Workloads.Select(w => w.Name));
        string strategies = string.Join(", ", s.Strategies.Select(x => x.Name));
        if (s.VirtualTime is VirtualTimeOptions vt)
        {
            // Host time per predicted point grows with its CPUs and its virtual time; the band runs each point three times.
            double perCpu = HostSecondsPerCpuMs * (vt.Warmup + vt.Duration).TotalMilliseconds * (vt.Band ? 3 : 1);
            double estimate = (double)experiment.TotalRuns / s.Threads.Count * s.Threads.Sum() * perCpu;
            return string.Create(CultureInfo.InvariantCulture, $"SpecVm prediction (virtual time, cost model {vt.Model.Name}): {experiment.TotalRuns} runs, about {TimeSpan.FromSeconds(estimate):m\\:ss}; ")
                + string.Create(CultureInfo.InvariantCulture, $"window {vt.Warmup.TotalMilliseconds:0.###} ms warm-up + {vt.Duration.TotalMilliseconds:0.###} ms virtual; quantum {vt.Quantum.Ticks * 100} ns; band {(vt.Band ? "on" : "off")}; ")
                + $"workloads {what}; strategies {strategies}; CPUs {string.Join(",", s.Threads)}";
        }

        // 0.3 s per run: an allowance for building, prefaulting and tearing down each run's machine.
        double perRun = s.Warmup.TotalSeconds + s.Duration.TotalSeconds + 0.3;
        int floors = experiment.FloorRuns;
        string floor = floors > 0 ? $"{floors} of them the physical floor" : s.MeasureFloor ? "no physical floor (no workload zeroes or copies pages)" : "physical floor off";
        return $"SpecVm scaling: {experiment.TotalRuns} runs ({floor}), about {TimeSpan.FromSeconds(experiment.TotalRuns * perRun):m\\:ss}; "
            + $"workloads {what}; strategies {strategies}; threads {string.Join(",", s.Threads)}";
    }

    /// <summary>
    /// Runs the experiment with live progress; null when interrupted before any run finished. A prediction runs point by
    /// point, so that a point that fails (a simulated deadlock) is recorded in <see cref="ScalingResult.Failures"/> and
    /// the sweep goes on; a measurement runs as one experiment.
    /// </summary>
    internal static ScalingResult? Execute(ScaleSettings s, CancellationToken cancellationToken)
    {
        var forward = new ForwardingProgress();
        var experiment = new ScalingExperiment(Options(s, forward));
        string header = Header(s, experiment);
        IReadOnlyList<string> placement = s.VirtualTime == null ? WarnAboutPlacement(s, experiment) : [];
        ScalingResult? result = null;
        Func<ScalingResult?> run = s.VirtualTime == null ? () => experiment.Run(cancellationToken) : () => RunPointByPoint(s, forward, experiment.TotalRuns, cancellationToken);
        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            Console.WriteLine(header);
            forward.Target = new PlainProgress();
            result = run();
        }
        else
        {
            AnsiConsole.MarkupLine(Markup.Escape(header));
            AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    ProgressTask task = ctx.AddTask("starting", maxValue: experiment.TotalRuns);
                    forward.Target = new SpectreProgress(task);
                    result = run();
                    task.Description = result?.Partial == true ? "interrupted" : "done";
                });
        }

        if (result?.Failures is { Count: > 0 } failures)
        {
            foreach (FailedPoint f in failures)
            {
                Console.Error.WriteLine($"warning: {f.Workload} / {f.Strategy} / {f.Threads} CPUs could not be predicted: {f.Error}");
            }
        }

        result?.Warnings.AddRange(placement.Except(result.Warnings)); // The experiment records them too (library users).
        return result == null || result.Points.Count == 0 ? null : result;
    }

    /// <summary>A prediction, one experiment per point (deterministic, so nothing is lost by not interleaving repeats).</summary>
    private static ScalingResult? RunPointByPoint(ScaleSettings s, ForwardingProgress forward, int total, CancellationToken cancellationToken)
    {
        ScalingResult? merged = null;
        var failures = new List<FailedPoint>();
        int done = 0;
        bool partial = false;
        foreach (Workload w in s.Workloads)
        {
            foreach (FaultStrategy strategy in s.Strategies)
            {
                foreach (int n in s.Threads)
                {
                    if (cancellationToken.IsCancellationRequested)
                    {
                        partial = true;
                        continue;
                    }

                    ScaleSettings one = s with { Workloads = [w], Strategies = [strategy], Threads = [n] };
                    int offset = done;
                    var shifted = new ShiftedProgress(forward, offset, total);
                    ScalingResult r;
                    try
                    {
                        r = new ScalingExperiment(Options(one, shifted)).Run(cancellationToken);
                    }
                    catch (InvalidOperationException e)
                    {
                        failures.Add(new FailedPoint { Workload = w.Name, Strategy = strategy.Name, Threads = n, Mode = Series.PredictedMode, Error = e.Message });
                        done += s.Repeats;
                        forward.Report(new ScalingProgress(done, total, $"{w.Name} / {strategy.Name} / {n} CPUs: FAILED"));
                        continue;
                    }

                    done += s.Repeats;
                    partial |= r.Partial;
                    foreach (ScalingPoint p in r.Points)
                    {
                        p.Mode = Series.PredictedMode; // with or without a band (the experiment marks only banded points)
                    }

                    if (merged == null)
                    {
                        merged = r;
                        merged.Settings.Workloads = s.Workloads.Select(x => x.Name).ToList();
                        merged.Settings.Strategies = s.Strategies.Select(x => x.Name).ToList();
                        merged.Settings.ThreadCounts = [.. s.Threads];
                    }
                    else
                    {
                        merged.Points.AddRange(r.Points);
                    }
                }
            }
        }

        if (merged == null)
        {
            if (failures.Count > 0)
            {
                throw new InvalidOperationException($"every point failed; the first, {failures[0].Workload} / {failures[0].Strategy} / {failures[0].Threads} CPUs: {failures[0].Error}");
            }

            return null;
        }

        merged.Partial = partial;
        merged.Usl = ScalingExperiment.FitAll(merged.Points);
        merged.Failures = failures.Count > 0 ? failures : null;
        merged.CreatedUtc = DateTimeOffset.UtcNow;
        return merged;
    }

    /// <summary>Records in <paramref name="settings"/> what the experiment itself does not: workload sizes and virtual-time options.</summary>
    internal static void Record(ScalingSettings settings, ScaleSettings s)
    {
        settings.MappingMib = s.MappingMib;
        settings.SliceMib = s.SliceMib;
        settings.WriterOpsPerSecond = s.WriterOpsPerSecond;
        if (s.VirtualTime is VirtualTimeOptions vt)
        {
            settings.CostModel = vt.Model;
            settings.VirtualTimePreset = vt.Model.Name;
            settings.QuantumNs = vt.Quantum.Ticks * 100.0;
            settings.Band = vt.Band;
        }
    }

    /// <summary>Writes the result and the report, prints the summary; the exit code (130 for a partial result).</summary>
    /// <remarks>Points that failed (a simulated deadlock) are written and reported, and make the exit code 1.</remarks>
    internal static int Write(ScalingResult result, string outDir, int repeats, ValidationReport? validation = null)
    {
        string dir = ReportWriter.WriteAll(result, outDir, validation);
        Summary(result);
        Console.WriteLine($"Results written to {Path.GetFullPath(dir)}");
        Console.WriteLine($"  report: {Path.Combine(dir, ReportWriter.MarkdownFile)}");
        if (result.Partial)
        {
            Console.Error.WriteLine($"interrupted: partial result ({result.Points.Count} points, some with fewer than {repeats} repeats) written to {Path.GetFullPath(dir)}");
            return ExitCodes.Interrupted;
        }

        if (result.Failures is { Count: > 0 } failures)
        {
            Console.Error.WriteLine($"error: {failures.Count} point(s) failed and are missing from the result (listed in the report, under \"Points that failed\").");
            return ExitCodes.Failed;
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
        // "± sd" for a measured point; for a predicted one its sensitivity band, when it has one.
        static string Spread(ScalingPoint p) => Series.IsPredicted(p)
            ? p.PredictedLow is double lo && p.PredictedHigh is double hi ? string.Create(CultureInfo.InvariantCulture, $"band {lo:N0} - {hi:N0}") : "no band"
            : string.Create(CultureInfo.InvariantCulture, $"± {p.OpsPerSecondStdDev:N0}");
        if (Console.IsOutputRedirected)
        {
            foreach (ScalingPoint p in r.Points)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{p.Workload,-30} {p.Strategy,-14} {p.Threads,3}  {Series.ModeName(p),-9} {p.OpsPerSecond,14:N0} ops/s {Spread(p)}"));
            }

            return;
        }

        var table = new Table().AddColumns("workload", "strategy", "threads", "mode", "ops/s", "± sd / band", "success");
        foreach (ScalingPoint p in r.Points)
        {
            table.AddRow(
                p.Workload,
                p.Strategy,
                p.Threads.ToString(CultureInfo.InvariantCulture),
                Series.ModeName(p),
                p.OpsPerSecond.ToString("N0", CultureInfo.InvariantCulture),
                Spread(p),
                p.SuccessRate() is double sr ? sr.ToString("P1", CultureInfo.InvariantCulture) : "-");
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

    /// <summary>One point's progress as part of the whole plan: its runs counted after the <paramref name="offset"/> before it.</summary>
    private sealed class ShiftedProgress(IProgress<ScalingProgress> target, int offset, int total) : IProgress<ScalingProgress>
    {
        public void Report(ScalingProgress value) => target.Report(new ScalingProgress(offset + value.Completed, total, value.Message));
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
