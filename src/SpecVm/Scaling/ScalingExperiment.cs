using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Sync;
using SpecVm.Workloads;

namespace SpecVm.Scaling;

/// <summary>
/// Runs workloads × strategies × thread counts and records throughput and the model's counters (the thread-scaling
/// harness of DESIGN.md §4, after will-it-scale's runtest.py and bitfaster's ThroughputAnalysis).
/// </summary>
/// <remarks>
/// Each run builds a fresh <see cref="Machine"/> (CPUs pinned to cores), sets the workload up, starts every task on its
/// CPU, lets it warm up, then measures a fixed window: operations and counters are read at the
/// window's two edges while the tasks keep running, so start-up and shut-down are never measured. Native workloads
/// run once per thread count, under strategy "native". Repeats are interleaved: every point runs once, then every
/// point again, so slow spells of a shared host spread over all points. With <see cref="ScalingOptions.MeasureFloor"/>,
/// each pass first measures the physical floor of the fault workloads at every thread count (<see cref="PhysicalFloor"/>).
/// </remarks>
public sealed class ScalingExperiment
{
    /// <summary>The strategy name recorded for native workloads.</summary>
    public const string NativeStrategy = "native";

    private readonly ScalingOptions _options;
    private readonly Mm.AddressSpaceOptions _profileOptions;
    private readonly Dictionary<Workload, Mm.AddressSpaceOptions?> _ownOptions;
    private readonly int[] _threads;

    /// <summary>Validates <paramref name="options"/>; throws <see cref="ArgumentException"/> with a clear message on bad input.</summary>
    /// <param name="options">What to run.</param>
    public ScalingExperiment(ScalingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.KernelProfile == null)
        {
            throw new ArgumentException("ScalingOptions.KernelProfile must not be null (KernelProfile.Default is the newest kernel).", nameof(options));
        }

        int cores = Affinity.AllowedCores.Count;
        _threads = (options.ThreadCounts ?? Enumerable.Range(1, cores).ToList()).Distinct().Order().ToArray();
        if (options.Workloads.Count == 0)
        {
            throw new ArgumentException("No workloads to run.", nameof(options));
        }

        if (options.Workloads.Any(w => !w.IsNative) && options.Strategies.Count == 0)
        {
            throw new ArgumentException("No fault strategies to run the model workloads with.", nameof(options));
        }

        if (_threads.Length == 0 || _threads[0] < 1)
        {
            throw new ArgumentException("Thread counts must be 1 or more.", nameof(options));
        }

        if (options.VirtualTime != null)
        {
            options.VirtualTime.Validate();
            if (options.Workloads.Any(w => w.IsNative))
            {
                throw new ArgumentException("Native workloads run on the real kernel and cannot run in virtual time; choose model workloads.", nameof(options));
            }
        }
        else if (!options.Oversubscribe && _threads[^1] > cores)
        {
            throw new ArgumentException($"{_threads[^1]} threads but this process may use only {cores} cores; allow oversubscription to run more threads than cores.", nameof(options));
        }

        int background = options.Workloads.Max(w => w.BackgroundTasks);
        if (_threads[^1] + background > MachineOptions.MaxCpus)
        {
            throw new ArgumentException($"At most {MachineOptions.MaxCpus - background} threads (a machine has at most {MachineOptions.MaxCpus} CPUs).", nameof(options));
        }

        if (options.Repeats < 1)
        {
            throw new ArgumentException("Repeats must be 1 or more.", nameof(options));
        }

        if (options.Duration <= TimeSpan.Zero || options.Warmup < TimeSpan.Zero)
        {
            throw new ArgumentException("The duration must be positive and the warm-up not negative.", nameof(options));
        }

        _options = options;
        _profileOptions = options.KernelProfile.CreateAddressSpaceOptions();
        _ownOptions = options.Workloads.Distinct().ToDictionary(w => w, w => w.AddressSpaceOptions);
    }

    /// <summary>Planted bug for tests: open the window after the warm-up without waiting for the tasks' region-of-interest marks.</summary>
    internal bool PlantIgnoreRegionOfInterest { get; init; }

    /// <summary>The thread counts, ascending.</summary>
    public IReadOnlyList<int> ThreadCounts => _threads;

    /// <summary>Runs in the experiment ((points + physical floors) × repeats).</summary>
    public int TotalRuns => (Plan().Count + FloorPlan().Count) * _options.Repeats;

    /// <summary>The runs of <see cref="TotalRuns"/> that measure a physical floor (<see cref="ScalingOptions.MeasureFloor"/>).</summary>
    internal int FloorRuns => FloorPlan().Count * _options.Repeats;

    /// <summary>Runs everything and returns the result.</summary>
    /// <param name="cancellationToken">
    /// Stops between runs: the result then holds the points finished so far (some with fewer repeats) and is marked
    /// <see cref="ScalingResult.Partial"/>.
    /// </param>
    public ScalingResult Run(CancellationToken cancellationToken = default)
    {
        var result = new ScalingResult
        {
            Machine = MachineInfoProbe.Collect(),
            Runtime = MachineInfoProbe.CollectRuntime(),
            Settings = new ScalingSettings
            {
                WarmupSeconds = _options.Warmup.TotalSeconds,
                DurationSeconds = _options.Duration.TotalSeconds,
                Repeats = _options.Repeats,
                Workloads = _options.Workloads.Select(w => w.Name).ToList(),
                Strategies = _options.Strategies.Select(s => s.Name).ToList(),
                ThreadCounts = _threads.ToList(),
                Oversubscribe = _options.Oversubscribe,
                Verify = _options.Verify,
                TargetedShootdowns = EffectiveAddressSpaceOptions.TargetedShootdowns,
                DowngradeOnUnmap = EffectiveAddressSpaceOptions.DowngradeOnUnmap,
                LockLayout = Mm.MmLockLines.Name(EffectiveAddressSpaceOptions.LockLayout),
                TransparentHugePages = ThpName(EffectiveAddressSpaceOptions.TransparentHugePages),
                KernelProfile = _options.KernelProfile.Name,
                KernelProfileSettings = new Dictionary<string, string>(_options.KernelProfile.Settings()),
                TimeMode = _options.VirtualTime == null ? "wall-clock" : "virtual",
                VirtualTimePreset = _options.VirtualTime?.Model.Name,
            },
        };
        if (_options.VirtualTime == null)
        {
            result.Warnings.AddRange(PlacementCheck.Warnings(_options.Workloads, _threads)); // Real threads only: virtual CPUs share no cores.
        }

        if (!_options.KernelProfile.PerVmaLocks && _options.Strategies.Any(s => s is Faults.PerVmaLockStrategy))
        {
            result.Warnings.Add($"Kernel profile {_options.KernelProfile.Name} has no per-VMA locks (merged in 6.4): per-vma-lock runs with 6.4's behaviour on this profile's other settings.");
        }

        List<(Workload W, FaultStrategy? S, int N)> plan = Plan();
        List<(FloorSpec F, int N)> floorPlan = FloorPlan();
        int total = (plan.Count + floorPlan.Count) * _options.Repeats;
        int done = 0;
        var runs = new List<RunMeasurement>[plan.Count];
        for (int i = 0; i < plan.Count; i++)
        {
            runs[i] = [];
        }

        var floorRuns = new List<double>[floorPlan.Count];
        for (int i = 0; i < floorPlan.Count; i++)
        {
            floorRuns[i] = [];
        }

        // Repeats are interleaved (every point once, then every point again) so that a slow spell of a shared host
        // spreads over all points instead of landing on whichever strategy happened to run then.
        // The floors join the interleaving: each pass measures them first, then every point.
        for (int r = 0; r < _options.Repeats && !cancellationToken.IsCancellationRequested; r++)
        {
            for (int i = 0; i < floorPlan.Count && !cancellationToken.IsCancellationRequested; i++)
            {
                var (f, n) = floorPlan[i];
                string label = $"physical floor ({f.Name}, {f.BytesPerThread >> 20} MiB per thread) / {n} thread{(n == 1 ? string.Empty : "s")}, run {r + 1}/{_options.Repeats}";
                _options.Progress?.Report(new ScalingProgress(done, total, label));
                double ops = PhysicalFloor.Measure(f, n, _options.Warmup, _options.Duration);
                floorRuns[i].Add(ops);
                done++;
                _options.Progress?.Report(new ScalingProgress(done, total, $"{label}: {ops:N0} ops/s"));
            }

            for (int i = 0; i < plan.Count && !cancellationToken.IsCancellationRequested; i++)
            {
                var (w, s, n) = plan[i];
                string label = $"{w.Name} / {s?.Name ?? NativeStrategy} / {n} thread{(n == 1 ? string.Empty : "s")}, run {r + 1}/{_options.Repeats}";
                _options.Progress?.Report(new ScalingProgress(done, total, label));
                RunMeasurement m = _options.VirtualTime == null ? RunOnce(w, s, n) : RunVirtual(w, s, n, _options.VirtualTime);
                runs[i].Add(m);
                done++;
                _options.Progress?.Report(new ScalingProgress(done, total, $"{label}: {m.OpsPerSecond:N0} ops/s"));
            }
        }

        for (int i = 0; i < plan.Count; i++)
        {
            if (runs[i].Count > 0)
            {
                var (w, s, n) = plan[i];
                result.Points.Add(Aggregate(w, s, n, runs[i]));
            }
        }

        if (floorPlan.Count > 0)
        {
            result.Floors = FloorPoints(floorPlan, floorRuns);
        }

        FillLinear(result.Points);
        result.Partial = done < total;
        result.Usl = FitAll(result.Points);
        result.CreatedUtc = DateTimeOffset.UtcNow;
        return result;
    }

    /// <summary>
    /// The memory-management locks a point reports (<see cref="ScalingPoint.MmLocks"/>), each its name and the first of
    /// its three counters (acquisitions, contentions, wait ticks, in that order in <see cref="CpuCounter"/>).
    /// </summary>
    internal static IReadOnlyList<(string Name, CpuCounter First)> MmLockCounters { get; } =
        [("zone", CpuCounter.ZoneLockAcquisitions), ("lru", CpuCounter.LruLockAcquisitions), ("memcg", CpuCounter.MemcgCounterWalks)];

    /// <summary>A USL fit for every workload × strategy in <paramref name="points"/>.</summary>
    /// <param name="points">Measured points.</param>
    public static List<UslFit> FitAll(IEnumerable<ScalingPoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        var fits = new List<UslFit>();
        foreach (var g in points.GroupBy(p => (p.Workload, p.Strategy)))
        {
            UslFit fit = Usl.Fit(g.Select(p => (p.Threads, p.OpsPerSecond)).ToList());
            fit.Workload = g.Key.Workload;
            fit.Strategy = g.Key.Strategy;
            fits.Add(fit);
        }

        return fits;
    }

    /// <summary>
    /// Sets each point's <see cref="ScalingPoint.Linear"/> from the 1-thread point of its workload, strategy and mode,
    /// where there is one (will-it-scale's <c>linear</c> column).
    /// </summary>
    internal static void FillLinear(List<ScalingPoint> points)
    {
        foreach (ScalingPoint p in points)
        {
            ScalingPoint? one = points.Find(o => o.Threads == 1 && o.Workload == p.Workload && o.Strategy == p.Strategy && o.Mode == p.Mode);
            p.Linear = one == null ? null : one.OpsPerSecond * p.Threads;
        }
    }

    private List<(Workload W, FaultStrategy? S, int N)> Plan()
    {
        var plan = new List<(Workload, FaultStrategy?, int)>();
        foreach (Workload w in _options.Workloads)
        {
            FaultStrategy?[] strategies = w.IsNative ? [null] : [.. _options.Strategies];
            foreach (FaultStrategy? s in strategies)
            {
                foreach (int n in _threads)
                {
                    plan.Add((w, s, n));
                }
            }
        }

        return plan;
    }

    /// <summary>
    /// The physical floors to measure: each distinct (kind, working set) of the workloads at each thread count, when
    /// <see cref="ScalingOptions.MeasureFloor"/> is on and the run is measured (real threads); empty otherwise.
    /// </summary>
    private List<(FloorSpec F, int N)> FloorPlan()
    {
        if (!_options.MeasureFloor || _options.VirtualTime != null)
        {
            return [];
        }

        var specs = _options.Workloads.Select(w => w.Floor).OfType<FloorSpec>().Distinct().ToList();
        return [.. specs.SelectMany(f => _threads.Select(n => (f, n)))];
    }

    /// <summary>One <see cref="FloorPoint"/> per workload with a floor and thread count measured, from its (shared) floor's repeats.</summary>
    private List<FloorPoint> FloorPoints(List<(FloorSpec F, int N)> floorPlan, List<double>[] floorRuns)
    {
        var floors = new List<FloorPoint>();
        foreach (Workload w in _options.Workloads.Distinct())
        {
            if (w.Floor is not FloorSpec spec)
            {
                continue;
            }

            for (int i = 0; i < floorPlan.Count; i++)
            {
                if (floorPlan[i].F != spec || floorRuns[i].Count == 0)
                {
                    continue;
                }

                double[] totals = [.. floorRuns[i]];
                double mean = totals.Average();
                floors.Add(new FloorPoint
                {
                    Workload = w.Name,
                    Threads = floorPlan[i].N,
                    Kind = spec.Name,
                    BytesPerThread = spec.BytesPerThread,
                    OpsPerSecond = mean,
                    OpsPerSecondStdDev = totals.Length > 1 ? Math.Sqrt(totals.Sum(t => (t - mean) * (t - mean)) / (totals.Length - 1)) : 0,
                    RepeatOpsPerSecond = [.. totals],
                });
            }
        }

        return floors;
    }

    /// <summary>The name a result records for a huge-page mode ("always", "never": Linux's sysfs words).</summary>
    internal static string ThpName(TransparentHugePageMode mode) => mode == TransparentHugePageMode.Always ? "always" : "never";

    /// <summary>
    /// A fresh machine for one run: the measured tasks plus the workload's background CPUs, its memory. With huge pages
    /// on, as much memory again is added and reserved in 2 MiB blocks (<see cref="MachineOptions.HugePageReserve"/>), so
    /// that every page the workload maps can be huge and the 4 KiB allocator still has the workload's whole budget for
    /// fallbacks and page tables.
    /// </summary>
    private Machine NewMachine(Workload workload, int threads, bool pin)
    {
        long bytes = Math.Max(workload.MemoryBytes(threads), 16L << 20);
        int hugeBlocks = OptionsFor(workload).TransparentHugePages == TransparentHugePageMode.Always
            ? (int)((bytes + (long)Paging.PageTable.PteTableSpan - 1) / (long)Paging.PageTable.PteTableSpan)
            : 0;
        var options = new MachineOptions
        {
            CpuCount = threads + workload.BackgroundTasks,
            MemoryBytes = bytes + (hugeBlocks * (long)Paging.PageTable.PteTableSpan) + (hugeBlocks > 0 ? (long)Paging.PageTable.PteTableSpan : 0),
            HugePageReserve = hugeBlocks,
            AllowOversubscription = true,
            Pin = pin,
        };
        _options.KernelProfile.ApplyTo(options);
        return new Machine(options);
    }

    /// <summary>The address-space options of the runs: the experiment's, or else the kernel profile's.</summary>
    private Mm.AddressSpaceOptions EffectiveAddressSpaceOptions => _options.AddressSpaceOptions ?? _profileOptions;

    /// <summary>
    /// A workload's address-space options: the experiment's if given, else those the workload came with, else the kernel
    /// profile's.
    /// </summary>
    private Mm.AddressSpaceOptions OptionsFor(Workload workload) =>
        _options.AddressSpaceOptions ?? _ownOptions.GetValueOrDefault(workload) ?? _profileOptions;

    private RunMeasurement RunOnce(Workload workload, FaultStrategy? strategy, int threads)
    {
        int cpus = threads + workload.BackgroundTasks;
        using Machine machine = NewMachine(workload, threads, pin: true);
        if (!workload.IsNative)
        {
            // The OS commits the arena lazily; commit it now so warm-up and window do not pay the host's first touches.
            machine.Memory.Prefault();
        }

        workload.AddressSpaceOptions = OptionsFor(workload);

        workload.Setup(machine, strategy, threads);
        var state = new RunState(cpus);
        var tasks = new Task[cpus];
        try
        {
            for (int i = 0; i < cpus; i++)
            {
                int id = i;
                tasks[i] = machine.RunAsync(id, cpu => TaskLoop(workload, cpu, id, threads, state));
            }

            Task all = Task.WhenAll(tasks);
            WaitQuietly(all, _options.Warmup);
            ThrowIfFailed(all);
            if (workload.HasRegionOfInterest && !PlantIgnoreRegionOfInterest)
            {
                WaitForRegionOfInterest(machine, workload, threads, all);
            }

            CounterSnapshot c0 = machine.Snapshot();
            CounterSnapshot tasks0 = machine.Snapshot(threads);
            long frames0 = machine.Frames.Allocated;
            long[] ops0 = state.ReadOps();
            long t0 = Stopwatch.GetTimestamp();
            workload.BeginMeasurement();
            WaitQuietly(all, _options.Duration);
            long t1 = Stopwatch.GetTimestamp();
            long[] ops1 = state.ReadOps();
            CounterSnapshot c1 = machine.Snapshot();
            CounterSnapshot tasks1 = machine.Snapshot(threads);
            long frames1 = machine.Frames.Allocated;
            double seconds = (t1 - t0) / (double)Stopwatch.Frequency;
            var metrics = new Dictionary<string, double>();
            workload.EndMeasurement(seconds, metrics);
            Volatile.Write(ref state.Stop, 1); // Release: tells every task loop (which reads it volatile) to stop.
            WaitAll(all);
            if (_options.Verify && !workload.IsNative)
            {
                Verify(machine, workload, strategy, threads);
            }

            var perThread = new double[threads];
            for (int i = 0; i < threads; i++)
            {
                perThread[i] = (ops1[i] - ops0[i]) / seconds;
            }

            double bg = 0;
            for (int i = threads; i < cpus; i++)
            {
                bg += (ops1[i] - ops0[i]) / seconds;
            }

            return new RunMeasurement(seconds, perThread, bg, c1.Minus(c0), frames1 - frames0, metrics) { TaskCounters = tasks1.Minus(tasks0) };
        }
        finally
        {
            Volatile.Write(ref state.Stop, 1); // Release: stop the task loops on every exit path, failures included.
            try
            {
                Task.WaitAll(tasks.Where(t => t != null).ToArray(), TimeSpan.FromSeconds(30));
            }
            catch (AggregateException)
            {
                // Already reported (or about to be) by the measured path.
            }

            workload.Teardown();
            machine.Srcu.Barrier();
        }
    }

    /// <summary>
    /// How long after the warm-up the tasks of a workload with a region of interest may take to mark it before the run
    /// fails: ten windows and warm-ups, and at least 30 s (real threads) or 100 ms of virtual time.
    /// </summary>
    private TimeSpan RegionOfInterestLimit(bool virtualTime)
    {
        TimeSpan warmup = virtualTime ? _options.VirtualTime!.Warmup : _options.Warmup;
        TimeSpan duration = virtualTime ? _options.VirtualTime!.Duration : _options.Duration;
        TimeSpan floor = virtualTime ? TimeSpan.FromMilliseconds(100) : TimeSpan.FromSeconds(30);
        TimeSpan ten = (warmup + duration) * 10;
        return ten > floor ? ten : floor;
    }

    /// <summary>
    /// Real threads: waits until every measured task has marked its region of interest (polling once a millisecond; the
    /// window then opens at the next snapshot), or fails naming the tasks that had not marked within the limit.
    /// </summary>
    private void WaitForRegionOfInterest(Machine machine, Workload workload, int threads, Task all)
    {
        TimeSpan limit = RegionOfInterestLimit(virtualTime: false);
        long deadline = Stopwatch.GetTimestamp() + (long)(limit.TotalSeconds * Stopwatch.Frequency);
        Cpu[] cpus = machine.CpuArray;
        while (true)
        {
            int pending = 0;
            for (int i = 0; i < threads; i++)
            {
                pending += cpus[i].RegionOfInterestAt == 0 ? 1 : 0;
            }

            if (pending == 0)
            {
                return;
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                string which = string.Join(", ", Enumerable.Range(0, threads).Where(i => cpus[i].RegionOfInterestAt == 0));
                throw new InvalidOperationException($"{workload.Name} declares a region of interest, but task(s) {which} had not begun it {limit.TotalSeconds:0.#} s after the warm-up (call Workload.BeginRegionOfInterest on each measured task's CPU).");
            }

            WaitQuietly(all, TimeSpan.FromMilliseconds(1));
            ThrowIfFailed(all);
        }
    }

    /// <summary>
    /// One predicted point: the run with the options' cost model, then (with <see cref="VirtualTimeOptions.Band"/>) the
    /// same with the uncertain constants at 0.5× and 1.5×; the band is the range of the three.
    /// </summary>
    private RunMeasurement RunVirtual(Workload workload, FaultStrategy? strategy, int threads, VirtualTimeOptions vt)
    {
        RunMeasurement main = RunOnceVirtual(workload, strategy, threads, vt.Model, vt, _options.Verify);
        if (!vt.Band)
        {
            return main;
        }

        double low = main.OpsPerSecond, high = main.OpsPerSecond;
        foreach (double f in (double[])[0.5, 1.5])
        {
            CostModel m = vt.Model;
            foreach (string c in CostModel.UncertainConstants)
            {
                m = m.Scaled(c, f);
            }

            double ops = RunOnceVirtual(workload, strategy, threads, m, vt, verify: false).OpsPerSecond;
            low = Math.Min(low, ops);
            high = Math.Max(high, ops);
        }

        return main with { Band = (low, high) };
    }

    private RunMeasurement RunOnceVirtual(Workload workload, FaultStrategy? strategy, int threads, CostModel model, VirtualTimeOptions vt, bool verify)
    {
        int cpus = threads + workload.BackgroundTasks;
        using Machine machine = NewMachine(workload, threads, pin: false); // One CPU runs at a time: the host places the threads.
        workload.AddressSpaceOptions = OptionsFor(workload);

        workload.Setup(machine, strategy, threads);
        double w0 = vt.Warmup.Ticks * 100.0, w1 = w0 + (vt.Duration.Ticks * 100.0); // ns
        var edges = new VirtualEdge[cpus];
        long hostStart = Stopwatch.GetTimestamp();
        long faultsBefore = machine.Snapshot()[CpuCounter.Faults];
        var sim = new Simulator(machine, model, cpus == 64 ? ulong.MaxValue : (1UL << cpus) - 1, vt.Quantum);
        RegionGate? gate = workload.HasRegionOfInterest && !PlantIgnoreRegionOfInterest
            ? new RegionGate(machine, sim, workload.Name, threads, w0, RegionOfInterestLimit(virtualTime: true).Ticks * 100.0)
            : null;
        bool simDisposed = false;
        RunMeasurement result;
        try
        {
            var tasks = new Task[cpus];
            for (int i = 0; i < cpus; i++)
            {
                int id = i;
                tasks[i] = machine.RunAsync(id, cpu => sim.Run(cpu, () => VirtualLoop(workload, sim, gate, cpu, id, threads, w0, w1, ref edges[id])));
            }

            WaitAll(Task.WhenAll(tasks));
            double hostSeconds = Stopwatch.GetElapsedTime(hostStart).TotalSeconds;
            long events = sim.Events, switches = sim.Switches;
            SortedDictionary<string, LineOps> lines = sim.LineTally();
            sim.Dispose();
            simDisposed = true;
            if (verify)
            {
                Verify(machine, workload, strategy, threads);
            }

            double seconds = (w1 - w0) / 1e9;
            var perThread = new double[threads];
            for (int i = 0; i < threads; i++)
            {
                perThread[i] = (edges[i].Ops1 - edges[i].Ops0) / seconds;
            }

            double bg = 0;
            for (int i = threads; i < cpus; i++)
            {
                bg += (edges[i].Ops1 - edges[i].Ops0) / seconds;
            }

            var counters = new long[RegisteredCounter.Capacity];
            var taskCounters = new long[counters.Length];
            for (int i = 0; i < cpus; i++)
            {
                VirtualEdge e = edges[i];
                for (int c = 0; c < counters.Length; c++)
                {
                    long d = e.Counters1![c] - e.Counters0![c];
                    counters[c] += d;
                    if (i < threads)
                    {
                        taskCounters[c] += d;
                    }
                }
            }

            var metrics = new Dictionary<string, double>();
            workload.EndMeasurement(seconds, metrics);
            // Every simulated fault of the run, warm-up included (from the region of interest on, for a workload with one:
            // the line tally was reset there too).
            long faults = machine.Snapshot()[CpuCounter.Faults] - (gate?.FaultsAtOpen ?? faultsBefore);
            double perFault = 1.0 / Math.Max(1, faults);
            result = new RunMeasurement(seconds, perThread, bg, new CounterSnapshot(counters), 0, metrics)
            {
                LinesPerFault = faults == 0 ? null : lines.ToDictionary(kv => kv.Key, kv => new SharedLineOps
                {
                    Loads = Math.Round(kv.Value.Loads * perFault, 3),
                    Stores = Math.Round(kv.Value.Stores * perFault, 3),
                    Rmws = Math.Round(kv.Value.Rmws * perFault, 3),
                    Transfers = Math.Round(kv.Value.Transfers * perFault, 3),
                }),
                TaskCounters = new CounterSnapshot(taskCounters),
                Simulation = new Dictionary<string, double>
                {
                    ["hostSeconds"] = Math.Round(hostSeconds, 3),
                    ["eventsPerHostSecond"] = Math.Round(events / hostSeconds),
                    ["handoffsPerHostSecond"] = Math.Round(switches / hostSeconds),
                    ["simulatedFaultsPerHostSecond"] = Math.Round(faults / hostSeconds),
                },
            };
        }
        catch
        {
            if (!simDisposed)
            {
                sim.Dispose();
                simDisposed = true;
            }

            try
            {
                // A failed run may leave locks held (a CPU died inside a write section): teardown is best effort
                // and must not hide the failure.
                workload.Teardown();
            }
            catch (Exception)
            {
            }

            throw;
        }
        finally
        {
            if (!simDisposed)
            {
                sim.Dispose();
            }
        }

        workload.Teardown();
        machine.Srcu.Barrier();
        return result;
    }

    /// <summary>
    /// A simulated CPU's loop: batches until its virtual clock passes the window's end. Operations count toward the window
    /// in proportion to the part of their batch inside it, so window edges cut batches exactly, whatever their length.
    /// With a region of interest (<paramref name="gate"/>), the window opens at the later of the warm-up's end and the last
    /// measured task's mark, and lasts as long.
    /// </summary>
    private static void VirtualLoop(Workload workload, Simulator sim, RegionGate? gate, Cpu cpu, int id, int threads, double w0, double w1, ref VirtualEdge edge)
    {
        double ops = 0;
        double start = w0, end = w1;
        double t0 = sim.Checkpoint(cpu);
        long[] before = ReadCounters(cpu, new long[RegisteredCounter.Capacity]);
        long[] after = new long[before.Length];
        while (true)
        {
            long n = id < threads ? workload.RunOperationBatch(cpu, id) : workload.RunBackgroundBatch(cpu, id - threads);
            double t1 = sim.Checkpoint(cpu);
            ReadCounters(cpu, after);
            if (edge.Counters0 == null && t1 >= w0 && (gate == null || gate.TryOpen(t1, out start)))
            {
                end = start + (w1 - w0);
                if (t1 >= start)
                {
                    double f = Fraction(t0, t1, start);
                    edge.Ops0 = ops + (n * f);
                    edge.Counters0 = Interpolate(before, after, f);
                    if (id == 0)
                    {
                        workload.BeginMeasurement();
                    }
                }
            }

            if (edge.Counters0 != null && t1 >= end)
            {
                double f = Fraction(t0, t1, end);
                edge.Ops1 = ops + (n * f);
                edge.Counters1 = Interpolate(before, after, f);
                return;
            }

            ops += n;
            t0 = t1;
            (before, after) = (after, before);
        }
    }

    /// <summary>Counters at a window edge inside a batch: the batch's counts in proportion, as for its operations.</summary>
    private static long[] Interpolate(long[] before, long[] after, double fraction)
    {
        var a = new long[before.Length];
        for (int c = 0; c < a.Length; c++)
        {
            a[c] = before[c] + (long)Math.Round((after[c] - before[c]) * fraction);
        }

        return a;
    }

    private static double Fraction(double t0, double t1, double at) => t1 <= t0 ? 1 : Math.Clamp((at - t0) / (t1 - t0), 0, 1);

    private static long[] ReadCounters(Cpu cpu, long[] a)
    {
        for (int c = 0; c < a.Length; c++)
        {
            a[c] = cpu.ReadSlot(c); // Every slot, registered counters included.
        }

        return a;
    }

    /// <summary>
    /// Virtual time: where the window of a workload with a region of interest opens. The simulated CPUs run one at a time,
    /// so they read each other's marks without races; the first to see every measured task marked fixes the opening (the
    /// last mark, or the warm-up's end if later) and resets the shared-line tally and the fault count there.
    /// </summary>
    private sealed class RegionGate(Machine machine, Simulator sim, string workload, int threads, double w0, double limitNs)
    {
        private double _opensAt = double.NaN;

        /// <summary>The machine's fault count when the window was fixed (what the lines per fault divide by from then on).</summary>
        public long? FaultsAtOpen { get; private set; }

        /// <summary>True once every measured task has marked, with <paramref name="opensAt"/> the window's start in ns.</summary>
        public bool TryOpen(double now, out double opensAt)
        {
            if (double.IsNaN(_opensAt))
            {
                long last = 0;
                Cpu[] cpus = machine.CpuArray;
                for (int i = 0; i < threads; i++)
                {
                    long at = cpus[i].RegionOfInterestAt;
                    if (at == 0)
                    {
                        if (now > w0 + limitNs)
                        {
                            throw new InvalidOperationException($"{workload} declares a region of interest, but task {i} had not begun it {limitNs / 1e6:0.#} ms of virtual time after the warm-up (call Workload.BeginRegionOfInterest on each measured task's CPU).");
                        }

                        opensAt = double.NaN;
                        return false;
                    }

                    last = Math.Max(last, at);
                }

                _opensAt = Math.Max(w0, last * (1e9 / Stopwatch.Frequency));
                FaultsAtOpen = machine.Snapshot()[CpuCounter.Faults];
                sim.ResetLineTally();
            }

            opensAt = _opensAt;
            return true;
        }
    }

    private struct VirtualEdge
    {
        public double Ops0;
        public double Ops1;
        public long[]? Counters0;
        public long[]? Counters1;
    }

    /// <summary>Quiescent (every task stopped, nothing torn down): the invariant checker over the workload's state.</summary>
    private static void Verify(Machine machine, Workload workload, FaultStrategy? strategy, int threads)
    {
        var violations = new List<string>(InvariantChecker.FindViolations(machine, workload.AddressSpaces.ToList(), workload.Files.ToList()));
        violations.AddRange(machine.Violations);
        if (violations.Count != 0)
        {
            throw new InvalidOperationException(
                $"Verification failed after {workload.Name} with {strategy?.Name ?? "no strategy"} at {threads} threads: {violations.Count} invariant violation(s): "
                + string.Join("; ", violations.Take(10)) + (violations.Count > 10 ? "; ..." : string.Empty));
        }
    }

    private static void TaskLoop(Workload workload, Cpu cpu, int id, int threads, RunState state)
    {
        ref long ops = ref state.Ops[id].Value;
        if (id < threads)
        {
            // Volatile read of Stop: the harness's store must end the loop promptly; a plain read could be hoisted.
            while (Volatile.Read(ref state.Stop) == 0)
            {
                long n = workload.RunOperationBatch(cpu, id);

                // Volatile write: publishes the running total to the harness thread, which reads it at the window edges.
                Volatile.Write(ref ops, ops + n);
            }
        }
        else
        {
            // As above: a volatile Stop read so the loop ends promptly, a volatile total for the harness thread.
            while (Volatile.Read(ref state.Stop) == 0)
            {
                long n = workload.RunBackgroundBatch(cpu, id - threads);
                Volatile.Write(ref ops, ops + n);
            }
        }
    }

    /// <summary>Waits up to <paramref name="time"/> for <paramref name="task"/>; a fault is left for <see cref="WaitAll"/>.</summary>
    private static void WaitQuietly(Task task, TimeSpan time)
    {
        try
        {
            task.Wait(time);
        }
        catch (AggregateException)
        {
            // Reported by ThrowIfFailed or WaitAll with the failing CPU named.
        }
    }

    private static void ThrowIfFailed(Task all)
    {
        if (all.IsFaulted || all.IsCompleted)
        {
            WaitAll(all);
            throw new InvalidOperationException("A workload task ended before the measurement was over.");
        }
    }

    private static void WaitAll(Task all)
    {
        try
        {
            all.GetAwaiter().GetResult();
        }
        catch (CpuException e)
        {
            throw new InvalidOperationException($"The workload failed on CPU {e.CpuId}: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    private ScalingPoint Aggregate(Workload w, FaultStrategy? s, int threads, List<RunMeasurement> runs)
    {
        double[] totals = runs.Select(r => r.OpsPerSecond).ToArray();
        double mean = totals.Average();
        double sd = totals.Length > 1 ? Math.Sqrt(totals.Sum(t => (t - mean) * (t - mean)) / (totals.Length - 1)) : 0;
        double seconds = runs.Sum(r => r.Seconds);
        var counters = new Dictionary<string, long>();
        foreach (RunMeasurement r in runs)
        {
            foreach (var (k, v) in r.Counters.ToDictionary())
            {
                counters[k] = counters.GetValueOrDefault(k) + v;
            }
        }

        long C(CpuCounter c) => counters.GetValueOrDefault(c.ToString());

        // The wait histograms count the measured tasks' CPUs only: a background writer's waits are not the tasks' lost
        // time (they show up in the tasks' own waits, as a longer write hold).
        long T(CpuCounter c) => runs.Sum(r => r.TaskCounters[c]);
        var histograms = new Dictionary<string, List<long>>();
        var waitSeconds = new Dictionary<string, double>();
        foreach (WaitKind kind in WaitHistogram.Kinds)
        {
            histograms[WaitHistogram.Name(kind)] = Enumerable.Range(0, WaitHistogram.BucketCount).Select(b => T(WaitHistogram.Counter(kind, b))).ToList();
            waitSeconds[WaitHistogram.Name(kind)] = T(WaitHistogram.TicksCounter(kind)) / (double)Stopwatch.Frequency;
        }

        var mmLocks = new Dictionary<string, MmLockStats>();
        foreach ((string name, CpuCounter first) in MmLockCounters)
        {
            mmLocks[name] = new MmLockStats { Acquisitions = C(first), Contentions = C(first + 1), WaitSeconds = C(first + 2) / (double)Stopwatch.Frequency };
        }

        List<double> perThread = Enumerable.Range(0, threads).Select(i => runs.Average(r => r.PerThread[i])).ToList();
        long hits = C(CpuCounter.TlbHits), misses = C(CpuCounter.TlbMisses);
        var point = new ScalingPoint
        {
            Workload = w.Name,
            Mode = runs[0].Simulation == null ? "measured" : "predicted",
            PredictedLow = runs[0].Band == null ? null : runs.Min(r => r.Band!.Value.Low),
            PredictedHigh = runs[0].Band == null ? null : runs.Max(r => r.Band!.Value.High),
            Simulation = runs[0].Simulation,
            LinesPerFault = runs[0].LinesPerFault,
            Strategy = s?.Name ?? NativeStrategy,
            Threads = threads,
            Native = w.IsNative,
            OperationUnit = w.OperationUnit,
            OpsPerSecond = mean,
            OpsPerSecondStdDev = sd,
            OpsPerSecondMedian = Median(totals),
            RepeatOpsPerSecond = totals.ToList(),
            PerThreadOpsPerSecond = perThread,
            PerThreadMin = perThread.Min(),
            PerThreadMax = perThread.Max(),
            OpsPerCpuSecond = mean / threads,
            WaitHistograms = histograms,
            WaitSeconds = waitSeconds,
            MmLocks = mmLocks,
            BackgroundOpsPerSecond = runs.Average(r => r.BackgroundOpsPerSecond),
            MeasuredSeconds = seconds,
            // Whatever the strategy declares, read from each run's counters (registered counters included).
            Outcomes = s == null ? [] : [.. s.Outcomes.Select(o => new OutcomeCount(o.Name, o.Kind, runs.Sum(r => o.Read(r.Counters))))],
            MmapLockWaitMsPerSecond = seconds > 0 ? C(CpuCounter.MmapWaitTicks) * 1000.0 / Stopwatch.Frequency / seconds : 0,
            IpisPerSecond = seconds > 0 ? C(CpuCounter.IpisSent) / seconds : 0,
            TlbHitRate = hits + misses > 0 ? hits / (double)(hits + misses) : null,
            FramesAllocatedPerSecond = seconds > 0 ? runs.Sum(r => r.FramesAllocated) / seconds : 0,
            Counters = counters,
        };
        foreach (string key in runs.SelectMany(r => r.Metrics.Keys).Distinct())
        {
            point.Metrics[key] = runs.Where(r => r.Metrics.ContainsKey(key)).Average(r => r.Metrics[key]);
        }

        return point;
    }

    private static double Median(double[] values)
    {
        double[] sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    private sealed class RunState(int cpus)
    {
        public readonly PaddedLong[] Ops = new PaddedLong[cpus];
        public int Stop;

        public long[] ReadOps()
        {
            var a = new long[Ops.Length];
            for (int i = 0; i < a.Length; i++)
            {
                // Volatile read: pairs with the task's volatile write of its running total.
                a[i] = Volatile.Read(ref Ops[i].Value);
            }

            return a;
        }
    }

    private sealed record RunMeasurement(double Seconds, double[] PerThread, double BackgroundOpsPerSecond, CounterSnapshot Counters, long FramesAllocated, Dictionary<string, double> Metrics)
    {
        /// <summary>Predicted runs: the sensitivity band's lowest and highest total ops/s.</summary>
        public (double Low, double High)? Band { get; init; }

        /// <summary>The counters of the measured tasks' CPUs only (without background CPUs).</summary>
        public required CounterSnapshot TaskCounters { get; init; }

        /// <summary>Predicted runs: the simulation's speed figures.</summary>
        public Dictionary<string, double>? Simulation { get; init; }

        /// <summary>Predicted runs: accesses per fault by kind of line.</summary>
        public Dictionary<string, SharedLineOps>? LinesPerFault { get; init; }

        public double OpsPerSecond => PerThread.Sum();
    }
}
