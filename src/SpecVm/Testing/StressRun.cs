using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Testing;

/// <summary>What a <see cref="StressRun"/> does. Every property has a default.</summary>
public sealed class StressOptions
{
    /// <summary>How long to keep starting rounds (default 60 s).</summary>
    public TimeSpan Duration { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>The master seed: it picks every round's seed, so the same seed replays the same rounds (default 1).</summary>
    public int Seed { get; set; } = 1;

    /// <summary>CPUs per machine (default 4: more CPUs than this host's cores is fine, they time-share).</summary>
    public int CpuCount { get; set; } = 4;

    /// <summary>How long one round's CPUs run before the round is checked (default 250 ms).</summary>
    public TimeSpan RoundDuration { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Strategy names to pick from (default: <see cref="StrategyCatalog.DefaultNames"/>).</summary>
    public IReadOnlyList<string> Strategies { get; set; } = StrategyCatalog.DefaultNames;

    /// <summary>Creates a strategy from a name of <see cref="Strategies"/> (default: <see cref="StrategyCatalog.TryCreate"/>).</summary>
    public Func<string, FaultStrategy>? StrategyFactory { get; set; }

    /// <summary>Inject random delays, forced aborts and trylock failures at the interleaving hooks (Debug builds only; default true).</summary>
    public bool InjectAtHooks { get; set; } = true;

    /// <summary>Called after every round, on the caller's thread.</summary>
    public Action<StressProgress>? Progress { get; set; }

    /// <summary>Test hook: configures each round's shared address space (to plant a bug, say).</summary>
    internal Action<AddressSpace>? ConfigureAddressSpace { get; set; }

    /// <summary>Test hook: hammer map/unmap in every round that has two random CPUs, not in half of them.</summary>
    internal bool AlwaysHammer { get; set; }

    /// <summary>Test hook: false to give every CPU random operations (no workload batches).</summary>
    internal bool Workloads { get; set; } = true;

    internal void Validate()
    {
        if (Duration < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(Duration), Duration, "The duration must not be negative.");
        }

        if (CpuCount < 1 || CpuCount > MachineOptions.MaxCpus)
        {
            throw new ArgumentOutOfRangeException(nameof(CpuCount), CpuCount, $"CPU count must be in 1..{MachineOptions.MaxCpus}.");
        }

        if (RoundDuration <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(RoundDuration), RoundDuration, "The round duration must be positive.");
        }

        ArgumentNullException.ThrowIfNull(Strategies, nameof(Strategies));
        if (Strategies.Count == 0)
        {
            throw new ArgumentException("At least one strategy is needed.", nameof(Strategies));
        }

        foreach (string name in Strategies)
        {
            if (StrategyFactory == null && StrategyCatalog.TryCreate(name ?? throw new ArgumentException("A strategy name is null.", nameof(Strategies))) == null)
            {
                throw new ArgumentException($"Unknown strategy '{name}'.", nameof(Strategies));
            }
        }
    }

    internal FaultStrategy CreateStrategy(string name) =>
        StrategyFactory?.Invoke(name) ?? StrategyCatalog.TryCreate(name) ?? throw new ArgumentException($"Unknown strategy '{name}'.", nameof(name));
}

/// <summary>One round's outcome, reported to <see cref="StressOptions.Progress"/>.</summary>
/// <param name="Round">The round's number, from 1.</param>
/// <param name="RoundSeed">The seed that replays the round with <see cref="StressRun.RunRound"/>.</param>
/// <param name="Strategy">The fault strategy of the round.</param>
/// <param name="Workload">The workload whose batches ran beside the random operations ("none" for none).</param>
/// <param name="Operations">Operations the round completed (random operations plus workload operations).</param>
/// <param name="HookInjections">Delays, aborts and trylock failures injected at hooks.</param>
/// <param name="Violations">What went wrong (empty when nothing did).</param>
/// <param name="Elapsed">Time since the run started.</param>
public sealed record StressProgress(long Round, int RoundSeed, string Strategy, string Workload, long Operations, long HookInjections, IReadOnlyList<string> Violations, TimeSpan Elapsed);

/// <summary>The outcome of a <see cref="StressRun"/>.</summary>
public sealed class StressReport
{
    /// <summary>The master seed.</summary>
    public int Seed { get; init; }

    /// <summary>Rounds run.</summary>
    public long Rounds { get; init; }

    /// <summary>Operations completed over every round.</summary>
    public long Operations { get; init; }

    /// <summary>Delays, aborts and trylock failures injected at hooks (zero in Release builds).</summary>
    public long HookInjections { get; init; }

    /// <summary>Wall-clock time of the run.</summary>
    public TimeSpan Elapsed { get; init; }

    /// <summary>Rounds per strategy name.</summary>
    public IReadOnlyDictionary<string, long> RoundsByStrategy { get; init; } = new Dictionary<string, long>();

    /// <summary>Every round's seed, in order.</summary>
    public IReadOnlyList<int> RoundSeeds { get; init; } = [];

    /// <summary>The violations of the failing round (empty when every round passed).</summary>
    public IReadOnlyList<string> Violations { get; init; } = [];

    /// <summary>The seed of the failing round (replay it with <see cref="StressRun.RunRound"/>), or null.</summary>
    public int? FailingRoundSeed { get; init; }

    /// <summary>True when no round found a violation.</summary>
    public bool Passed => Violations.Count == 0;
}

/// <summary>
/// A randomized long stress mode. Each round builds a <see cref="Machine"/>, picks a strategy and a mix: some CPUs run
/// random Map/Unmap/Protect/DontNeed/Read/Write on one shared address space (anonymous, private-file and shared-file
/// mappings in a churn area of four page-table-sized regions, so they meet under the same page-table locks), and each
/// of them also keeps a private anonymous region inside the same address space where it writes a pattern, zaps and
/// write-protects pieces, and checks every read against what it wrote (a cheap oracle); the other CPUs run batches of
/// a small model workload (page-fault1/2/3, database-load, ebizzy) on the same machine. In Debug builds the
/// interleaving hooks inject random delays, forced aborts and trylock failures, from a seeded random per CPU. After the
/// round, with every CPU quiescent, the <see cref="InvariantChecker"/> runs over every live address space and file,
/// the machine's own violation log is read, and after teardown every frame must be free again. The first round that
/// finds anything stops the run; its seed replays it.
/// </summary>
public static class StressRun
{
    private const ulong Page = Memory.PhysicalMemory.PageSize;
    private const ulong ChurnBase = 0x4000_0000;
    private const ulong Region = 2UL << 20; // One PTE table each.
    private const int ChurnRegions = 4;
    private const int ChurnRegionPages = 512;
    private const ulong OwnBase = 0x8000_0000;
    private const int OwnPages = 64;
    private const int FilePages = 64;
    private const ulong HammerBase = 0x1_0000_0000;
    private const int HammerRegions = 16;
    private static readonly string[] WorkloadNames = ["none", "page-fault1", "page-fault2", "page-fault3", "database-load", "ebizzy"];

    /// <summary>Runs rounds until <see cref="StressOptions.Duration"/> is over or a round finds a violation.</summary>
    /// <param name="options">What to run.</param>
    public static StressReport Run(StressOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var clock = Stopwatch.StartNew();
        var master = new Random(options.Seed);
        var seeds = new List<int>();
        var byStrategy = new Dictionary<string, long>();
        long operations = 0, injections = 0;
        do
        {
            int roundSeed = master.Next();
            seeds.Add(roundSeed);
            RoundOutcome r = RunRoundCore(options, roundSeed);
            operations += r.Operations;
            injections += r.HookInjections;
            byStrategy[r.Strategy] = byStrategy.GetValueOrDefault(r.Strategy) + 1;
            options.Progress?.Invoke(new StressProgress(seeds.Count, roundSeed, r.Strategy, r.Workload, r.Operations, r.HookInjections, r.Violations, clock.Elapsed));
            if (r.Violations.Count != 0)
            {
                return Report(r.Violations, roundSeed);
            }
        }
        while (clock.Elapsed < options.Duration);

        return Report([], null);

        StressReport Report(IReadOnlyList<string> violations, int? failing) => new()
        {
            Seed = options.Seed,
            Rounds = seeds.Count,
            Operations = operations,
            HookInjections = injections,
            Elapsed = clock.Elapsed,
            RoundsByStrategy = byStrategy,
            RoundSeeds = seeds,
            Violations = violations,
            FailingRoundSeed = failing,
        };
    }

    /// <summary>Runs the one round that <paramref name="roundSeed"/> describes (to replay a failing round).</summary>
    /// <param name="options">The options of the run (CPU count, round duration, strategies).</param>
    /// <param name="roundSeed">A round seed from a <see cref="StressReport"/> or a progress line.</param>
    public static StressProgress RunRound(StressOptions options, int roundSeed)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var clock = Stopwatch.StartNew();
        RoundOutcome r = RunRoundCore(options, roundSeed);
        return new StressProgress(1, roundSeed, r.Strategy, r.Workload, r.Operations, r.HookInjections, r.Violations, clock.Elapsed);
    }

    private sealed record RoundOutcome(string Strategy, string Workload, long Operations, long HookInjections, IReadOnlyList<string> Violations);

    private static RoundOutcome RunRoundCore(StressOptions options, int roundSeed)
    {
        var rng = new Random(roundSeed);
        string strategyName = options.Strategies[rng.Next(options.Strategies.Count)];
        int cpus = options.CpuCount;

        // Workload CPUs: none with one CPU; otherwise sometimes none, else up to half the CPUs.
        string workloadName = cpus < 2 || !options.Workloads ? "none" : WorkloadNames[rng.Next(WorkloadNames.Length)];
        Workload? workload = CreateWorkload(workloadName);
        int workloadCpus = workload == null ? 0 : Math.Max(1 + workload.BackgroundTasks, rng.Next(1, (cpus / 2) + 1));
        if (workload != null && workloadCpus >= cpus)
        {
            workload = null;
            workloadName = "none";
            workloadCpus = 0;
        }

        int randomCpus = cpus - workloadCpus;

        // Half the rounds with two or more random CPUs: CPU 0 hammers map/publish/unmap of one-page VMAs at fresh
        // addresses while the others also write to the published page (the speculative recheck's race).
        bool hammer = randomCpus >= 2 && (rng.Next(2) == 0 || options.AlwaysHammer);

        // With three random CPUs or more (or when focused), CPU 1 does nothing but write to the published page: the
        // race then happens within a few hundred unmaps rather than thousands.
        bool racer = hammer && (randomCpus >= 3 || options.AlwaysHammer);
        var published = new ulong[1];
        int workloadTasks = workload == null ? 0 : workloadCpus - workload.BackgroundTasks;
        var violations = new List<string>();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long operations = 0;
        long injections = 0;

        using var machine = new Machine(new MachineOptions
        {
            CpuCount = cpus,
            MemoryBytes = 96L << 20,
            WatchdogTimeout = TimeSpan.FromSeconds(20), // Hook delays and a shared host stretch irq-off spans.
            PoisonRetiredVmas = true,
        });
        long freeBefore = machine.Memory.Census().Free;
        FaultStrategy strategy = options.CreateStrategy(strategyName);
        var privateFile = new SimFile(machine, FilePages * (long)Page);
        var sharedFile = new SimFile(machine, FilePages * (long)Page);
        byte[] content = new byte[FilePages * (int)Page];
        rng.NextBytes(content);
        privateFile.Write(0, content);
        sharedFile.Write(0, content);
        var mm = new AddressSpace(machine, strategy, new AddressSpaceOptions { ZapBatchPages = rng.Next(2) == 0 ? 16 : 64 });
        options.ConfigureAddressSpace?.Invoke(mm);
        workload?.Setup(machine, strategy, workloadTasks);

        var hookCounts = new long[cpus];
        if (options.InjectAtHooks && InterleavingHooks.CompiledIn)
        {
            var hookRandoms = new Random[cpus];
            for (int i = 0; i < cpus; i++)
            {
                hookRandoms[i] = new Random(roundSeed ^ ((i + 1) * 0x5bd1e995));
            }

            int delayPerMille = rng.Next(10, 200);
            int abortPerMille = rng.Next(0, 100);
            machine.Hooks.Handler = (point, cpu) => Inject(point, hookRandoms[cpu.Id], ref hookCounts[cpu.Id], delayPerMille, abortPerMille);
        }

        var perCpuOps = new long[cpus];
        var deadline = Stopwatch.StartNew();
        TimeSpan roundDuration = options.RoundDuration;
        try
        {
            var tasks = new Task[cpus];
            for (int c = 0; c < cpus; c++)
            {
                int id = c;
                int cpuSeed = rng.Next();
                tasks[c] = machine.RunAsync(c, cpu =>
                {
                    try
                    {
                        if (hammer && id == 0)
                        {
                            perCpuOps[id] = Hammer(cpu, mm, published, deadline, roundDuration, errors);
                        }
                        else if (racer && id == 1)
                        {
                            perCpuOps[id] = Race(cpu, mm, published, deadline, roundDuration, errors);
                        }
                        else if (id < randomCpus)
                        {
                            perCpuOps[id] = RandomOperations(cpu, mm, privateFile, sharedFile, new Random(cpuSeed), deadline, roundDuration, errors, published);
                        }
                        else
                        {
                            int index = id - randomCpus;
                            long ops = 0;
                            while (deadline.Elapsed < roundDuration && errors.IsEmpty)
                            {
                                ops += index < workloadTasks ? workload!.RunOperationBatch(cpu, index) : workload!.RunBackgroundBatch(cpu, index - workloadTasks);
                            }

                            perCpuOps[id] = ops;
                        }
                    }
                    catch (Exception e)
                    {
                        errors.Enqueue($"CPU {id}: {e.GetType().Name}: {e.Message}");
                    }
                });
            }

            if (!Task.WaitAll(tasks, roundDuration + TimeSpan.FromSeconds(60)))
            {
                errors.Enqueue("The round did not finish within a minute of its deadline (a hang: deadlock or livelock).");
                machine.Hooks.Handler = null;
                return new RoundOutcome(strategyName, workloadName, perCpuOps.Sum(), hookCounts.Sum(), [.. errors]);
            }

            machine.Hooks.Handler = null;
            operations = perCpuOps.Sum();
            injections = hookCounts.Sum();
            violations.AddRange(errors);

            // Quiescent: every live address space and file of the machine.
            var spaces = new List<AddressSpace> { mm };
            var files = new List<SimFile> { privateFile, sharedFile };
            if (workload != null)
            {
                spaces.AddRange(workload.AddressSpaces);
                files.AddRange(workload.Files);
            }

            violations.AddRange(InvariantChecker.FindViolations(machine, spaces, files));
            violations.AddRange(machine.Violations);

            // The shared file's cached pages, and the private file's (never written through a mapping), hold no garbage:
            // private-file pages must still equal the content written at the start.
            byte[] back = new byte[content.Length];
            privateFile.Read(0, back);
            if (!back.AsSpan().SequenceEqual(content))
            {
                violations.Add("The private file's contents changed (a private mapping wrote through to the page cache).");
            }
        }
        finally
        {
            machine.Hooks.Handler = null;
            workload?.Teardown();
            mm.Dispose();
            privateFile.Dispose();
            sharedFile.Dispose();
        }

        long freeAfter = machine.Memory.Census().Free;
        if (violations.Count == 0 && freeAfter != freeBefore)
        {
            violations.Add($"After teardown {freeBefore - freeAfter} frames are not free ({machine.Memory.Census()}).");
        }

        return new RoundOutcome(strategyName, workloadName, operations, injections, violations);
    }

    private static HookAction Inject(HookPoint point, Random random, ref long count, int delayPerMille, int abortPerMille)
    {
        int roll = random.Next(1000);
        if (roll < delayPerMille)
        {
            count++;
            if (roll % 4 == 0)
            {
                Thread.Yield();
            }
            else
            {
                Thread.SpinWait(random.Next(1, 4000));
            }
        }

        roll = random.Next(1000);
        if (roll < abortPerMille)
        {
            switch (point)
            {
                case HookPoint.SpecBeforePtlTryLock:
                    count++;
                    return roll % 2 == 0 ? HookAction.FailTryLock : HookAction.ForceAbort;
                case HookPoint.SpecAfterLookup or HookPoint.SpecAfterSeqRead or HookPoint.SpecBeforeRecheck or HookPoint.VmaLockAfterLookup:
                    count++;
                    return HookAction.ForceAbort;
                default:
                    break;
            }
        }

        return HookAction.Continue;
    }

    private static Workload? CreateWorkload(string name) => name switch
    {
        "page-fault1" => new PageFault1(256 * 1024),
        "page-fault2" => new PageFault2(256 * 1024),
        "page-fault3" => new PageFault3(256 * 1024),
        "database-load" => new DatabaseLoad(1L << 20, 2000, 64L << 10),
        "ebizzy" => new Ebizzy(128 * 1024, 16),
        _ => null,
    };

    /// <summary>
    /// One CPU's random operations: anything on the shared churn area (any outcome is allowed but an exception, since
    /// the other CPUs change it under us), and, on its own region, writes and reads checked against what it wrote.
    /// </summary>
    private static long RandomOperations(Cpu cpu, AddressSpace mm, SimFile privateFile, SimFile sharedFile, Random rng, Stopwatch deadline, TimeSpan duration, System.Collections.Concurrent.ConcurrentQueue<string> errors, ulong[] published)
    {
        ulong own = OwnBase + ((ulong)cpu.Id * Region);
        mm.Map(cpu, OwnPages * Page, Protection.ReadWrite, MappingKind.Anonymous, null, 0, own);
        ulong[] expected = new ulong[OwnPages];
        long ops = 0;
        long stamp = 0;
        while (deadline.Elapsed < duration && errors.IsEmpty)
        {
            ops++;
            int op = rng.Next(100);
            if (op < 40)
            {
                // Own region: write a stamp, read it back, and read another own page (zero or its last stamp).
                int i = rng.Next(OwnPages);
                ulong value = ((ulong)cpu.Id << 56) | (ulong)++stamp << 16 | (uint)i;
                ulong a = own + ((ulong)i * Page) + ((ulong)i * 8 % Page);
                Expect(mm.TryWrite(cpu, a, value), AccessResult.Ok, "own write", a);
                expected[i] = value;
                int j = rng.Next(OwnPages);
                ulong b = own + ((ulong)j * Page) + ((ulong)j * 8 % Page);
                Expect(mm.TryRead(cpu, b, out ulong got), AccessResult.Ok, "own read", b);
                if (got != expected[j])
                {
                    throw new InvalidDataException($"CPU {cpu.Id} read 0x{got:x} at 0x{b:x} in its own region, last wrote 0x{expected[j]:x}.");
                }
            }
            else if (op < 43)
            {
                // Own region: zap a chunk (anonymous: zeros come back).
                int first = rng.Next(OwnPages - 8);
                mm.DontNeed(cpu, own + ((ulong)first * Page), 8 * Page);
                Array.Clear(expected, first, 8);
            }
            else if (op < 45)
            {
                // Own region: read-only for a moment, a write must fault, reads still see the data; then writable again.
                int first = rng.Next(OwnPages - 4);
                ulong a = own + ((ulong)first * Page);
                mm.Protect(cpu, a, 4 * Page, Protection.Read);
                Expect(mm.TryWrite(cpu, a, 1UL), AccessResult.SegmentationFault, "write to own read-only", a);
                Expect(mm.TryRead(cpu, a + ((ulong)first * 8 % Page), out ulong got), AccessResult.Ok, "own read-only read", a);
                if (got != expected[first])
                {
                    throw new InvalidDataException($"CPU {cpu.Id} read 0x{got:x} from its read-only page 0x{a:x}, last wrote 0x{expected[first]:x}.");
                }

                mm.Protect(cpu, a, 4 * Page, Protection.ReadWrite);
            }
            else if (op >= 95)
            {
                LocklessWalk(cpu, mm, rng);
            }
            // Acquire read of the hammer's published region (a stale one is harmless: any result is checked the same way).
            else if (op < 55 && Volatile.Read(ref published[0]) is ulong target && target != 0)
            {
                // Race the hammer's unmap: Ok or SIGSEGV are both fine; a PTE left behind outside every VMA is not.
                _ = mm.TryWrite(cpu, target, (ulong)ops);
            }
            else
            {
                ChurnOperation(cpu, mm, privateFile, sharedFile, rng, op);
            }
        }

        // Leave the own region verified and mapped (the invariant checker sees it; teardown frees it).
        for (int i = 0; i < OwnPages; i++)
        {
            ulong a = own + ((ulong)i * Page) + ((ulong)i * 8 % Page);
            Expect(mm.TryRead(cpu, a, out ulong got), AccessResult.Ok, "final own read", a);
            if (got != expected[i])
            {
                throw new InvalidDataException($"CPU {cpu.Id} read 0x{got:x} at 0x{a:x} after its round, last wrote 0x{expected[i]:x}.");
            }
        }

        return ops;
    }

    /// <summary>
    /// Maps a one-page VMA at a fresh address, publishes it, and unmaps it, again and again; addresses are never reused
    /// within the round (a VMA at the start of each 2 MiB region keeps its PTE table alive), so a PTE that a racing
    /// fault installs after the unmap stays outside every VMA until the round's invariant check.
    /// </summary>
    private static long Hammer(Cpu cpu, AddressSpace mm, ulong[] published, Stopwatch deadline, TimeSpan duration, System.Collections.Concurrent.ConcurrentQueue<string> errors)
    {
        for (int r = 0; r < HammerRegions; r++)
        {
            mm.Map(cpu, Page, Protection.ReadWrite, MappingKind.Anonymous, null, 0, HammerBase + ((ulong)r * Region));
        }

        long ops = 0;
        for (ulong slot = 1; slot < ChurnRegionPages && deadline.Elapsed < duration && errors.IsEmpty; slot++)
        {
            for (int r = 0; r < HammerRegions; r++)
            {
                ulong a = HammerBase + ((ulong)r * Region) + (slot * Page);
                mm.Map(cpu, Page, Protection.ReadWrite, MappingKind.Anonymous, null, 0, a);
                Volatile.Write(ref published[0], a); // The racing CPUs read it with Volatile.Read; a stale one is harmless.
                Thread.SpinWait(50);
                mm.Unmap(cpu, a, Page);
                ops += 2;
            }
        }

        Volatile.Write(ref published[0], 0); // Release: the racing CPUs stop aiming at the hammer's last region.
        return ops;
    }

    /// <summary>
    /// A lockless walk (fast GUP, the speculative fault's walk): interrupts off, walk to a churn region's PTE table and
    /// keep looking at its frame; it must stay that region's level-1 table until interrupts are enabled again, because
    /// a detached table is freed only after a shootdown that this CPU, with interrupts off, has not acknowledged.
    /// </summary>
    private static unsafe void LocklessWalk(Cpu cpu, AddressSpace mm, Random rng)
    {
        ulong region = ChurnBase + ((ulong)rng.Next(ChurnRegions) * Region);
        cpu.SwitchTo(mm.TlbContext); // In the CPU mask, as a CPU running one of the address space's threads is.
        cpu.LocalIrqDisable();
        try
        {
            ulong* entry = mm.PageTable.WalkLockless(region + ((ulong)rng.Next(ChurnRegionPages) * Page), out long ptePfn);
            if (entry == null)
            {
                return;
            }

            _ = Volatile.Read(ref *entry); // Touch the PTE as a walker would (READ_ONCE); the checks below use the frame.
            for (int look = 0; look < 64; look++)
            {
                ref Memory.PageFrame frame = ref mm.Machine.Memory.Frame(ptePfn);
                Memory.FrameState state = frame.ReadState();
                // Acquire reads of the table's metadata: a freed and reused frame shows its new owner and base.
                long level = Volatile.Read(ref frame.Owner);
                long baseVa = Volatile.Read(ref frame.Index);
                if (state != Memory.FrameState.PageTable || level != 1 || baseVa != (long)region)
                {
                    throw new InvalidDataException($"CPU {cpu.Id}: the PTE table {ptePfn} of 0x{region:x}, walked with interrupts off, became {state} (level {level}, base 0x{baseVa:x}) before they were enabled: a table was freed before its shootdown.");
                }

                Thread.SpinWait(8);
            }
        }
        finally
        {
            cpu.LocalIrqEnable();
        }
    }

    /// <summary>Writes to whatever page the hammer published (Ok or SIGSEGV, depending on the race: both are fine).</summary>
    private static long Race(Cpu cpu, AddressSpace mm, ulong[] published, Stopwatch deadline, TimeSpan duration, System.Collections.Concurrent.ConcurrentQueue<string> errors)
    {
        long ops = 0;
        while (deadline.Elapsed < duration && errors.IsEmpty)
        {
            ulong target = Volatile.Read(ref published[0]); // The hammer's Volatile.Write; a stale address is harmless.
            if (target != 0)
            {
                _ = mm.TryWrite(cpu, target, (ulong)ops);
                ops++;
            }
            else
            {
                Thread.Yield();
            }
        }

        return ops;
    }

    private static void ChurnOperation(Cpu cpu, AddressSpace mm, SimFile privateFile, SimFile sharedFile, Random rng, int op)
    {
        ulong firstPage = (ulong)rng.Next(ChurnRegionPages);
        ulong pages = Math.Min((ulong)rng.Next(1, 33), ChurnRegionPages - firstPage);
        ulong start = ChurnBase + ((ulong)rng.Next(ChurnRegions) * Region) + (firstPage * Page);
        ulong length = pages * Page;
        if (op < 55)
        {
            var kind = (MappingKind)rng.Next(3);
            SimFile? file = kind switch { MappingKind.PrivateFile => privateFile, MappingKind.SharedFile => sharedFile, _ => null };
            Protection p = rng.Next(4) == 0 ? Protection.Read : Protection.ReadWrite;
            long offset = file == null ? 0 : rng.Next(FilePages - (int)pages + 1) * (long)Page;
            try
            {
                mm.Map(cpu, length, p, kind, file, offset, start);
            }
            catch (ArgumentException e) when (e.ParamName == "fixedAddress")
            {
                // Another mapping is there (MAP_FIXED_NOREPLACE refuses): an allowed outcome.
            }
        }
        else if (op >= 62 && op < 65)
        {
            // The whole region: its PTE table is detached and freed (after the shootdown) under a lockless walker.
            mm.Unmap(cpu, start & ~(Region - 1), Region);
        }
        else if (op < 65)
        {
            mm.Unmap(cpu, start, length);
        }
        else if (op < 77)
        {
            try
            {
                if (op < 72)
                {
                    mm.Protect(cpu, start, length, rng.Next(3) switch { 0 => Protection.None, 1 => Protection.Read, _ => Protection.ReadWrite });
                }
                else
                {
                    mm.DontNeed(cpu, start, length);
                }
            }
            catch (UnmappedRangeException)
            {
                // A hole in the range (another CPU unmapped part of it): mprotect and madvise refuse, an allowed outcome.
            }
        }
        else
        {
            bool write = op < 88;
            for (ulong a = start; a < start + length; a += Page)
            {
                ulong address = a + ((ulong)rng.Next(512) * 8);
                AccessResult r = write ? mm.TryWrite(cpu, address, (ulong)rng.NextInt64()) : mm.TryRead(cpu, address, out ulong _);
                if (r == AccessResult.OutOfMemory)
                {
                    throw new InvalidOperationException($"Out of memory at 0x{address:x}: the churn area cannot need that much.");
                }
            }
        }
    }

    private static void Expect(AccessResult got, AccessResult want, string what, ulong address)
    {
        if (got != want)
        {
            throw new InvalidDataException($"{what} at 0x{address:x}: {got}, expected {want}.");
        }
    }
}
