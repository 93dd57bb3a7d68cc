using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using SpecVm.Faults;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Benchmarks.Cli;

/// <summary>One measured constant of a calibration: its value, the built-in one, and how it was measured.</summary>
/// <param name="Constant">The <see cref="CostModel"/> property.</param>
/// <param name="Value">The calibrated value, ns.</param>
/// <param name="BuiltIn">The built-in calibration's value, ns.</param>
/// <param name="How">How it was measured (and any caveat).</param>
internal sealed record CalibrationStep(string Constant, double Value, double BuiltIn, string How);

/// <summary>How long <see cref="Calibration"/> measures.</summary>
/// <param name="Window">The measured window of each real run.</param>
/// <param name="Warmup">Warm-up of each real run.</param>
/// <param name="Repeats">Real runs per constant (the median is used).</param>
/// <param name="KernelTime">Time per page-kernel loop.</param>
/// <param name="VirtualWindow">The virtual window of the model runs the residuals are taken from.</param>
internal sealed record CalibrationSettings(TimeSpan Window, TimeSpan Warmup, int Repeats, TimeSpan KernelTime, TimeSpan VirtualWindow)
{
    /// <summary>The default: about 10 s on a 2-core machine.</summary>
    public static CalibrationSettings Full { get; } = new(TimeSpan.FromSeconds(0.4), TimeSpan.FromSeconds(0.1), 3, TimeSpan.FromSeconds(0.25), TimeSpan.FromMilliseconds(2));

    /// <summary>A few seconds, for tests and smoke runs: noisier.</summary>
    public static CalibrationSettings Quick { get; } = new(TimeSpan.FromSeconds(0.05), TimeSpan.FromSeconds(0.02), 1, TimeSpan.FromSeconds(0.03), TimeSpan.FromMilliseconds(0.5));
}

/// <summary>
/// Measures this machine's local costs for the <c>host</c> cost model (issue 13's <c>calibrate</c> step).
/// </summary>
/// <remarks>
/// <para>
/// The page kernels are timed directly (<see cref="PageKernels.Clear"/> and <see cref="PageKernels.Copy"/> over a
/// 4 MiB working set). The costs the model charges per event — a TLB hit, a VMA edit, a fault — are each taken as a
/// <em>residual</em>: a one-CPU real run of a loop dominated by that event gives nanoseconds per operation; a one-CPU
/// virtual run of the same loop gives what the model charges per operation for everything else (lines, atomics, page
/// kernels, the constants already calibrated) and how many of the events an operation has; the constant is what makes
/// the two agree. So the model's one-CPU price of each loop equals this machine's measurement by construction — a
/// calibration, not evidence — and the fault constant absorbs whatever per-fault work the model does not price
/// separately (zap, TLB misses, harness overhead). The loops: <see cref="TlbHitLoop"/>, <see cref="Mmap1"/> with 64 KiB mappings
/// and page-fault1 with a 4 MiB mapping, under the mmap-lock strategy.
/// </para>
/// <para>
/// The core-to-core transfer is a ping-pong of one cache line between two threads pinned to two different cores
/// (half a round trip, as published core-to-core tables report). The host model gives every pair of simulated CPUs
/// that cost: one socket, one complex of <see cref="MachineOptions.MaxCpus"/> cores — more cores like these, sharing
/// lines at the measured cost. Everything else (TLB miss, zap, flushes, IPIs, wake-ups, bandwidth) keeps its
/// built-in value.
/// </para>
/// </remarks>
internal static unsafe class Calibration
{
    private const int KernelPages = 1024; // 4 MiB: the virtual mode's page-fault mapping

    /// <summary>Measures; <paramref name="progress"/> hears what runs.</summary>
    public static (CostModel Model, List<CalibrationStep> Steps) Measure(CalibrationSettings settings, Action<string>? progress = null)
    {
        var builtIn = new CostModel();
        CostModel m = builtIn.Clone();
        m.Name = "host";
        m.Sockets = 1;
        m.CoresPerSocket = MachineOptions.MaxCpus;
        m.CoresPerComplex = MachineOptions.MaxCpus;
        var steps = new List<CalibrationStep>();

        progress?.Invoke("page kernels (zero, copy)");
        m.PageZeroNs = Round(KernelNs(settings.KernelTime, copy: false));
        steps.Add(new(nameof(CostModel.PageZeroNs), m.PageZeroNs, builtIn.PageZeroNs, "PageKernels.Clear over a 4 MiB working set, median of batches"));
        m.PageCopyNs = Round(KernelNs(settings.KernelTime, copy: true));
        steps.Add(new(nameof(CostModel.PageCopyNs), m.PageCopyNs, builtIn.PageCopyNs, "PageKernels.Copy between two 4 MiB working sets, median of batches"));

        // The transfer is measured in three bursts spread over the calibration (first, between the loops, last): where
        // the host moves its CPUs about (a virtual machine's vCPUs), one burst sees one placement; the median of three
        // is the placement seen most, and the How column shows all three.
        var bursts = new List<(double? Ns, string How)>();
        progress?.Invoke("core-to-core transfer (pinned ping-pong, burst 1 of 3)");
        bursts.Add(TransferNs(settings.KernelTime / 3));

        progress?.Invoke("TLB hit (1-CPU read loop, real and virtual)");
        CalibrationStep tlb = Residual(m, builtIn, nameof(CostModel.TlbHitNs), "TlbHits", () => new TlbHitLoop(), settings, "TLB-hit read loop");
        progress?.Invoke("VMA edit (1-CPU map/unmap loop, real and virtual)");
        CalibrationStep edit = Residual(m, builtIn, nameof(CostModel.VmaEditNs), "MmapWriteAcquisitions", () => new Mmap1(64 << 10), settings, "map+unmap 64 KiB loop");
        progress?.Invoke("core-to-core transfer (burst 2 of 3)");
        bursts.Add(TransferNs(settings.KernelTime / 3));
        progress?.Invoke("fault (1-CPU page-fault1, 4 MiB mapping, real and virtual)");
        CalibrationStep fault = Residual(m, builtIn, nameof(CostModel.FaultNs), "Faults", () => new PageFault1(4L << 20), settings, "page-fault1 (4 MiB mapping)");
        progress?.Invoke("core-to-core transfer (burst 3 of 3)");
        bursts.Add(TransferNs(settings.KernelTime / 3));

        var measured = bursts.Where(b => b.Ns != null).Select(b => b.Ns!.Value).ToList();
        double? transfer = measured.Count == 0 ? null : Median(measured);
        string transferHow = transfer == null
            ? bursts[0].How
            : bursts[0].How + string.Create(CultureInfo.InvariantCulture, $"; bursts {string.Join(", ", bursts.Select(b => b.Ns?.ToString("0", CultureInfo.InvariantCulture) ?? "-"))} ns, median used");
        if (transfer is double t)
        {
            m.SameComplexNs = Round(t);
            m.SameSocketNs = Round(t);
        }

        steps.Add(new(nameof(CostModel.SameComplexNs), m.SameComplexNs, builtIn.SameComplexNs, transferHow));
        steps.Add(tlb);
        steps.Add(edit);
        steps.Add(fault);

        MachineInfo machine = MachineInfoProbe.Collect();
        RuntimeSettings runtime = MachineInfoProbe.CollectRuntime();
        m.Source = string.Create(CultureInfo.InvariantCulture,
            $"calibrated by the calibrate command on {machine.CpuModel} ({machine.AllowedCores} cores, {machine.KernelRelease ?? machine.Os}, {runtime.BuildConfiguration} build, commit {(machine.GitCommit is { Length: >= 10 } c ? c[..10] : "unknown")}) at {DateTime.UtcNow:u}: ")
            + "page zero/copy timed directly; TLB hit, VMA edit and fault as 1-CPU residuals (a real run minus what the model charges for everything else); "
            + $"core-to-core {(transfer != null ? "from a pinned ping-pong, for every pair of simulated CPUs" : "built-in (not measured: " + transferHow + ")")}; every other constant built-in";
        m.Validate();
        return (m, steps);
    }

    /// <summary>
    /// Sets <paramref name="constant"/> of <paramref name="m"/> so that the model's one-CPU price of the loop equals its
    /// measured cost on this machine.
    /// </summary>
    private static CalibrationStep Residual(CostModel m, CostModel builtIn, string constant, string counter, Func<Workload> loop, CalibrationSettings s, string what)
    {
        var property = typeof(CostModel).GetProperty(constant)!;
        double probe = (double)property.GetValue(builtIn)!;
        var mmapLock = StrategyCatalog.TryCreate("mmap-lock")!;

        ScalingResult real = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [loop()],
            Strategies = [mmapLock],
            ThreadCounts = [1],
            Warmup = s.Warmup,
            Duration = s.Window,
            Repeats = s.Repeats,
        }).Run();
        double measuredNs = 1e9 / real.Points[0].OpsPerSecondMedian;

        // The model's run with the constant at its built-in value: its price per operation, and the events per operation.
        CostModel probed = m.Clone();
        property.SetValue(probed, probe);
        ScalingResult predicted = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [loop()],
            Strategies = [mmapLock],
            ThreadCounts = [1],
            Warmup = s.VirtualWindow / 4,
            Duration = s.VirtualWindow,
            Repeats = 1,
            VirtualTime = new VirtualTimeOptions { Model = probed, Band = false, Warmup = s.VirtualWindow / 4, Duration = s.VirtualWindow },
        }).Run();
        ScalingPoint q = predicted.Points[0];
        double ops = q.OpsPerSecond * q.MeasuredSeconds;
        double events = q.Counters.GetValueOrDefault(counter) / ops;
        if (!(events > 0))
        {
            throw new InvalidOperationException($"Calibration of {constant}: the {what} counted no {counter} events in the model.");
        }

        double modelNs = 1e9 / q.OpsPerSecond;
        double rest = modelNs - (probe * events);
        double value = (measuredNs - rest) / events;
        string how = string.Create(CultureInfo.InvariantCulture,
            $"{what}: measured {measuredNs:0.0} ns/op (median of {s.Repeats}), model's other costs {rest:0.0} ns/op, {events:0.###} {counter}/op");
        if (value < 0)
        {
            how += "; CLAMPED to 0: the model's other costs already exceed the measurement";
            value = 0;
        }

        property.SetValue(m, Round(value));
        return new CalibrationStep(constant, Round(value), probe, how);
    }

    /// <summary>Nanoseconds per 4 KiB page zeroed (or copied), the median of batches over a 4 MiB working set.</summary>
    private static double KernelNs(TimeSpan time, bool copy)
    {
        nuint bytes = KernelPages * 4096;
        byte* a = (byte*)NativeMemory.AlignedAlloc(bytes, 4096);
        byte* b = (byte*)NativeMemory.AlignedAlloc(bytes, 4096);
        try
        {
            new Span<byte>(a, (int)bytes).Fill(1); // commit and warm both
            new Span<byte>(b, (int)bytes).Fill(2);
            var samples = new List<double>();
            long end = Stopwatch.GetTimestamp() + (long)(time.TotalSeconds * Stopwatch.Frequency);
            while (samples.Count < 5 || Stopwatch.GetTimestamp() < end)
            {
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < KernelPages; i++)
                {
                    if (copy)
                    {
                        PageKernels.Copy(a + (i * 4096L), b + (i * 4096L));
                    }
                    else
                    {
                        PageKernels.Clear(a + (i * 4096L));
                    }
                }

                samples.Add(Stopwatch.GetElapsedTime(t0).TotalNanoseconds / KernelPages);
            }

            return Median(samples);
        }
        finally
        {
            NativeMemory.AlignedFree(a);
            NativeMemory.AlignedFree(b);
        }
    }

    /// <summary>
    /// Half the round trip of one cache line between two threads pinned to the first two allowed cores, the median of
    /// trials; null (with the reason) with one core or where pinning is refused.
    /// </summary>
    private static (double? Ns, string How) TransferNs(TimeSpan time)
    {
        IReadOnlyList<int> cores = Affinity.AllowedCores;
        if (cores.Count < 2)
        {
            return (null, "only one core: no transfer to measure, built-in value kept");
        }

        int coreA = cores[0], coreB = cores[1];

        // Short trials (about 0.2-1 ms each), many of them, and their median: on a shared machine a trial that spans a
        // descheduling of either thread measures the scheduler, not the line; most short trials span none.
        const int Rounds = 2_000;
        long* line = (long*)NativeMemory.AlignedAlloc(128, 128);
        *line = 0;
        PinResult pinB = PinResult.NotSupported;
        using var ready = new ManualResetEventSlim(false);
        var ponger = new Thread(() =>
        {
            pinB = Affinity.TryPinCurrentThread(coreB);
            ready.Set();
            if (pinB != PinResult.Pinned)
            {
                return;
            }

            while (true)
            {
                // Acquire read: waits for the pinger's odd value (its store moved the line to the pinger's core).
                long v = Volatile.Read(ref *line);
                if (v < 0)
                {
                    return;
                }

                if ((v & 1) == 1)
                {
                    // Release store: hands the line back; the pinger's acquire read sees v + 1.
                    Volatile.Write(ref *line, v + 1);
                }
            }
        }) { IsBackground = true, Name = "calibrate ponger" };
        var samples = new List<double>();
        try
        {
            ponger.Start();
            ready.Wait();
            if (pinB != PinResult.Pinned)
            {
                return (null, $"pinning to core {coreB} was {pinB}: built-in value kept");
            }

            PinResult pinA = PinResult.NotSupported;
            var pinger = new Thread(() =>
            {
                pinA = Affinity.TryPinCurrentThread(coreA);
                if (pinA != PinResult.Pinned)
                {
                    return;
                }

                long v = 0;
                long end = Stopwatch.GetTimestamp() + (long)(time.TotalSeconds * Stopwatch.Frequency);
                while (samples.Count < 20 || Stopwatch.GetTimestamp() < end)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    for (int i = 0; i < Rounds; i++)
                    {
                        // Release store of an odd value: the ponger's acquire read takes the line (one transfer).
                        Volatile.Write(ref *line, v + 1);
                        while (Volatile.Read(ref *line) != v + 2)
                        {
                            // Spin: the ponger's store brings the line back (the second transfer).
                        }

                        v += 2;
                    }

                    samples.Add(Stopwatch.GetElapsedTime(t0).TotalNanoseconds / Rounds / 2);
                }
            }) { Name = "calibrate pinger" };
            pinger.Start();
            pinger.Join();
            if (pinA != PinResult.Pinned)
            {
                return (null, $"pinning to core {coreA} was {pinA}: built-in value kept");
            }

            string how = string.Create(CultureInfo.InvariantCulture, $"ping-pong of one line between cores {coreA} and {coreB}: half the round trip, median of short trials of {Rounds:N0}");
            return (Median(samples), how);
        }
        finally
        {
            // Release store of the stop value: the ponger's next read ends its loop.
            Volatile.Write(ref *line, -1);
            if (ponger.IsAlive)
            {
                ponger.Join();
            }

            NativeMemory.AlignedFree(line);
        }
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        int mid = values.Count / 2;
        return values.Count % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
    }

    private static double Round(double ns) => Math.Round(ns, ns < 10 ? 2 : 1);
}
