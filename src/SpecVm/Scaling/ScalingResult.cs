using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using SpecVm.Mm;

namespace SpecVm.Scaling;

/// <summary>
/// The outcome of a <see cref="ScalingExperiment"/>: machine information, settings, one <see cref="ScalingPoint"/> per
/// workload × strategy × thread count, and the USL fits. Serialised as JSON (camelCase) with a schema version.
/// </summary>
/// <remarks>
/// Schema history (docs/results-schema.json describes the current version): 1, the first (a document without
/// <c>schemaVersion</c> is read as 1); 2 adds what identifies a run — <see cref="Runtime"/> (build configuration, JIT
/// and GC settings), <see cref="Partial"/>, the kernel release and CPU topology in <see cref="Machine"/>, and every
/// workload-changing option in <see cref="Settings"/>; 3 adds predicted points (virtual time): each point's
/// <see cref="ScalingPoint.Mode"/>, band and simulation speed, the cost model, quantum and band in the settings of a
/// virtual run, <see cref="PredictedSettings"/> for a result that holds measured and predicted points together, and
/// <see cref="Failures"/>; 4 replaces the speculative and per-VMA-lock fields of each point
/// (<see cref="ScalingPoint.SpeculativeAttempts"/>, <see cref="ScalingPoint.AbortReasons"/>, <see cref="ScalingPoint.VmaLock"/>
/// and the rest) with <see cref="ScalingPoint.Outcomes"/>, whatever the point's strategy declares
/// (<see cref="FaultStrategy.Outcomes"/>). A version 1 to 3 document loads with its points' outcomes rebuilt from
/// the old fields (<see cref="ScalingPoint.OutcomesFromLegacyFields"/>), which stay readable.
/// Older documents load with the newer fields null (a point without a mode is measured). Optional fields added
/// within version 2: <c>settings.targetedShootdowns</c>, <c>settings.downgradeOnUnmap</c> and <see cref="Warnings"/>; within
/// version 4: <see cref="Floors"/>.
/// </remarks>
public sealed class ScalingResult
{
    /// <summary>The JSON schema version this code writes.</summary>
    public const int CurrentSchemaVersion = 4;

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The schema version of this document (1 when a document has none).</summary>
    public int SchemaVersion { get; set; } = CurrentSchemaVersion;

    /// <summary>True when the run was interrupted (Ctrl-C): some points are missing or have fewer repeats.</summary>
    public bool Partial { get; set; }

    /// <summary>When the experiment finished (UTC).</summary>
    public DateTimeOffset CreatedUtc { get; set; }

    /// <summary>The machine it ran on.</summary>
    public MachineInfo Machine { get; set; } = new();

    /// <summary>How it was run (for a result holding both modes: how its measured points were run).</summary>
    public ScalingSettings Settings { get; set; } = new();

    /// <summary>
    /// How the predicted points were run, when this result holds measured points too (the default comparison adds a
    /// predicted sweep to its measured one); null otherwise, where <see cref="Settings"/> says how every point was run.
    /// </summary>
    public ScalingSettings? PredictedSettings { get; set; }

    /// <summary>The build and runtime that measured it (null in schema version 1).</summary>
    public RuntimeSettings? Runtime { get; set; }

    /// <summary>The measured points.</summary>
    public List<ScalingPoint> Points { get; set; } = [];

    /// <summary>USL fits, one per workload × strategy.</summary>
    public List<UslFit> Usl { get; set; } = [];

    /// <summary>
    /// What the harness warned about while measuring, one line each (for example, more CPU threads than cores, or CPU
    /// threads on SMT siblings: see <see cref="PlacementCheck"/>); empty when nothing, and in documents written before it existed.
    /// </summary>
    public List<string> Warnings { get; set; } = [];

    /// <summary>
    /// The physical floor of each fault workload at each measured thread count (<see cref="ScalingOptions.MeasureFloor"/>):
    /// pages zeroed (or copied) per second by pinned threads in memory of their own, measured in the same run; null when
    /// not measured (the option off, a virtual-time run, no fault workload, or a document written before it existed).
    /// </summary>
    public List<FloorPoint>? Floors { get; set; }

    /// <summary>
    /// Points that could not be run, with why (a simulated deadlock, say: a prediction that finds one reports it here and
    /// the sweep goes on); null when every point ran.
    /// </summary>
    public List<FailedPoint>? Failures { get; set; }

    /// <summary>The point for (<paramref name="workload"/>, <paramref name="strategy"/>, <paramref name="threads"/>), or null.</summary>
    /// <param name="workload">Workload name.</param>
    /// <param name="strategy">Strategy name ("native" for native workloads).</param>
    /// <param name="threads">Thread count.</param>
    public ScalingPoint? Find(string workload, string strategy, int threads) =>
        Points.Find(p => p.Workload == workload && p.Strategy == strategy && p.Threads == threads);

    /// <summary>The physical floor of (<paramref name="workload"/>, <paramref name="threads"/>), or null.</summary>
    /// <param name="workload">Workload name.</param>
    /// <param name="threads">Thread count.</param>
    public FloorPoint? FindFloor(string workload, int threads) =>
        Floors?.Find(f => f.Workload == workload && f.Threads == threads);

    /// <summary>The JSON text.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Parses JSON written by <see cref="ToJson"/>; throws <see cref="InvalidDataException"/> on bad input.</summary>
    /// <param name="json">The text.</param>
    public static ScalingResult FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        ScalingResult? r;
        try
        {
            // A document without schemaVersion is version 1; one without points is not a result at all.
            JsonObject document = JsonNode.Parse(json) as JsonObject
                ?? throw new InvalidDataException("Not a SpecVm scaling result (not a JSON object).");
            if (!document.ContainsKey("points"))
            {
                throw new InvalidDataException("Not a SpecVm scaling result (no points).");
            }

            document.TryAdd("schemaVersion", 1);
            r = document.Deserialize<ScalingResult>(JsonOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Not a SpecVm scaling result: {e.Message}", e);
        }

        if (r == null || r.SchemaVersion < 1)
        {
            throw new InvalidDataException("Not a SpecVm scaling result (schemaVersion below 1).");
        }

        if (r.SchemaVersion > CurrentSchemaVersion)
        {
            throw new InvalidDataException($"Scaling result schema version {r.SchemaVersion} is newer than this build understands ({CurrentSchemaVersion}).");
        }

        if (r.SchemaVersion < 4)
        {
            foreach (ScalingPoint p in r.Points)
            {
                p.Outcomes ??= p.OutcomesFromLegacyFields();
            }
        }

        return r;
    }

    /// <summary>Writes the JSON to <paramref name="path"/>.</summary>
    /// <param name="path">The file.</param>
    public void Save(string path) => File.WriteAllText(path, ToJson());

    /// <summary>Reads a result file; throws <see cref="InvalidDataException"/> or an IO exception on failure.</summary>
    /// <param name="path">The file.</param>
    public static ScalingResult Load(string path) => FromJson(File.ReadAllText(path));
}

/// <summary>
/// The physical floor of one workload's faults at one thread count (<see cref="ScalingResult.Floors"/>): what no fault
/// handler can beat, the fault's page zeroing (or copying) with every lock and table walk taken away.
/// </summary>
public sealed class FloorPoint
{
    /// <summary>Workload name (workloads whose faults do the same work on the same memory share one measurement).</summary>
    public string Workload { get; set; } = string.Empty;

    /// <summary>Threads, each pinned as a measured point's CPU is.</summary>
    public int Threads { get; set; }

    /// <summary>"zero" (each thread zeroes 4 KiB pages) or "copy" (each copies 4 KiB pages, page to page).</summary>
    public string Kind { get; set; } = string.Empty;

    /// <summary>Each thread's buffer, bytes: the workload's working set per task (the page-fault mapping; twice it to copy).</summary>
    public long BytesPerThread { get; set; }

    /// <summary>Pages zeroed (copied) per second, all threads together, mean over repeats.</summary>
    public double OpsPerSecond { get; set; }

    /// <summary>Sample standard deviation over repeats (0 with one repeat).</summary>
    public double OpsPerSecondStdDev { get; set; }

    /// <summary>Each repeat's pages per second.</summary>
    public List<double> RepeatOpsPerSecond { get; set; } = [];
}

/// <summary>A point that failed instead of producing a throughput.</summary>
public sealed class FailedPoint
{
    /// <summary>Workload name.</summary>
    public string Workload { get; set; } = string.Empty;

    /// <summary>Strategy name.</summary>
    public string Strategy { get; set; } = string.Empty;

    /// <summary>Thread (CPU) count.</summary>
    public int Threads { get; set; }

    /// <summary>"measured" or "predicted".</summary>
    public string Mode { get; set; } = string.Empty;

    /// <summary>What went wrong (for a simulated deadlock: every CPU's state).</summary>
    public string Error { get; set; } = string.Empty;
}

/// <summary>How an experiment was run.</summary>
public sealed class ScalingSettings
{
    /// <summary>Warm-up per run, seconds.</summary>
    public double WarmupSeconds { get; set; }

    /// <summary>Measured window per run, seconds.</summary>
    public double DurationSeconds { get; set; }

    /// <summary>Runs per point.</summary>
    public int Repeats { get; set; }

    /// <summary>Workload names.</summary>
    public List<string> Workloads { get; set; } = [];

    /// <summary>Strategy names.</summary>
    public List<string> Strategies { get; set; } = [];

    /// <summary>Thread counts.</summary>
    public List<int> ThreadCounts { get; set; } = [];

    /// <summary>True when thread counts above the core count were allowed.</summary>
    public bool Oversubscribe { get; set; }

    /// <summary>True when the model's invariants were checked after each run (null in schema version 1).</summary>
    public bool? Verify { get; set; }

    /// <summary>page-fault mapping size per round, MiB (null when not recorded).</summary>
    public long? MappingMib { get; set; }

    /// <summary>database-load bytes per loader, MiB (null when not recorded).</summary>
    public long? SliceMib { get; set; }

    /// <summary>database-load writer operations per second (null when not recorded).</summary>
    public double? WriterOpsPerSecond { get; set; }

    /// <summary>Targeted TLB shootdowns in the model's address spaces (null when not recorded: schema version 1, or older v2).</summary>
    public bool? TargetedShootdowns { get; set; }

    /// <summary>munmap downgraded the mmap lock before zapping (null when not recorded: schema version 1, or older v2).</summary>
    public bool? DowngradeOnUnmap { get; set; }

    /// <summary>
    /// Where the model's address spaces put the mmap lock's count and the page-table lock ("padded", "shared-line"; see
    /// <see cref="Mm.LockLayout"/>); null in results written before the switch (they were padded).
    /// </summary>
    public string? LockLayout { get; set; }

    /// <summary>
    /// Transparent huge pages in the model's address spaces ("always" or "never", <see cref="Mm.AddressSpaceOptions.TransparentHugePages"/>);
    /// null in results written before THP was modelled (which ran without).
    /// </summary>
    public string? TransparentHugePages { get; set; }

    /// <summary>The kernel profile the model ran as ("6.15"; see <see cref="Mm.KernelProfile"/>); null in results written before profiles.</summary>
    public string? KernelProfile { get; set; }

    /// <summary>The kernel profile's settings by name (null in results written before profiles).</summary>
    public Dictionary<string, string>? KernelProfileSettings { get; set; }

    /// <summary>How time was measured: "wall-clock" or "virtual" (null in schema version 1, which knew only wall-clock). In virtual time the window and warm-up above are virtual seconds.</summary>
    public string? TimeMode { get; set; }

    /// <summary>The virtual-time cost model's name (a preset, or a file's); null for wall-clock runs.</summary>
    public string? VirtualTimePreset { get; set; }

    /// <summary>Virtual-time runs: the cost model, every constant (null for wall-clock runs).</summary>
    public Simulation.CostModel? CostModel { get; set; }

    /// <summary>Virtual-time runs: the scheduling quantum, nanoseconds (null for wall-clock runs).</summary>
    public double? QuantumNs { get; set; }

    /// <summary>Virtual-time runs: true when each point carries a sensitivity band (null for wall-clock runs).</summary>
    public bool? Band { get; set; }

    /// <summary>The seed of a seeded (virtual-time) run; null for wall-clock runs.</summary>
    public long? Seed { get; set; }
}

/// <summary>The build and runtime settings that change what a measurement means.</summary>
public sealed class RuntimeSettings
{
    /// <summary>The library's build configuration ("Release", "Debug"), from its AssemblyConfiguration attribute.</summary>
    public string BuildConfiguration { get; set; } = string.Empty;

    /// <summary>True when the JIT optimised the library (false for a Debug build: about 3x slower).</summary>
    public bool JitOptimized { get; set; }

    /// <summary>Tiered compilation (System.Runtime.TieredCompilation / DOTNET_TieredCompilation).</summary>
    public bool TieredCompilation { get; set; }

    /// <summary>Tiered profile-guided optimisation (System.Runtime.TieredPGO / DOTNET_TieredPGO).</summary>
    public bool TieredPgo { get; set; }

    /// <summary>Quick JIT for methods with loops (System.Runtime.TieredCompilation.QuickJitForLoops).</summary>
    public bool QuickJitForLoops { get; set; }

    /// <summary>True under the server garbage collector.</summary>
    public bool ServerGc { get; set; }

    /// <summary>True with background (concurrent) GC.</summary>
    public bool ConcurrentGc { get; set; }

    /// <summary>The GC latency mode.</summary>
    public string GcLatencyMode { get; set; } = string.Empty;

    /// <summary>Every DOTNET_* and COMPlus_* environment variable set for the process.</summary>
    public Dictionary<string, string> Environment { get; set; } = [];
}

/// <summary>One workload × strategy × thread count, aggregated over its repeats.</summary>
public sealed class ScalingPoint
{
    /// <summary>Workload name.</summary>
    public string Workload { get; set; } = string.Empty;

    /// <summary>"measured" (real threads, wall clock) or "predicted" (virtual time); null in results before schema 3 (measured).</summary>
    public string? Mode { get; set; }

    /// <summary>Predicted points: the lowest throughput of the sensitivity band (uncertain constants perturbed); null otherwise.</summary>
    public double? PredictedLow { get; set; }

    /// <summary>Predicted points: the highest throughput of the sensitivity band; null otherwise.</summary>
    public double? PredictedHigh { get; set; }

    /// <summary>Predicted points: host seconds the simulation took, and simulated events per host second (speed); null otherwise.</summary>
    public Dictionary<string, double>? Simulation { get; set; }

    /// <summary>
    /// Predicted points: per fault, the accesses to each kind of cache line the model touched (the mmap lock's count, VMA
    /// sequence counts, PTEs, PTLs, the frame pool's lock…), and how many of them found the line in another CPU's cache
    /// (transfers), over the whole simulated run, warm-up included (from the region of interest on, for a workload with
    /// one: <c>Workload.HasRegionOfInterest</c>); null for measured points.
    /// </summary>
    public Dictionary<string, SharedLineOps>? LinesPerFault { get; set; }

    /// <summary>Strategy name, or "native" for a native workload.</summary>
    public string Strategy { get; set; } = string.Empty;

    /// <summary>Measured tasks (one per CPU).</summary>
    public int Threads { get; set; }

    /// <summary>True for a workload on the real kernel.</summary>
    public bool Native { get; set; }

    /// <summary>What one operation is.</summary>
    public string OperationUnit { get; set; } = string.Empty;

    /// <summary>Total operations per second, mean over repeats.</summary>
    public double OpsPerSecond { get; set; }

    /// <summary>Sample standard deviation of total operations per second over repeats (0 with one repeat).</summary>
    public double OpsPerSecondStdDev { get; set; }

    /// <summary>Median over repeats of total operations per second (robust to one disturbed repeat).</summary>
    public double OpsPerSecondMedian { get; set; }

    /// <summary>Total operations per second of each repeat.</summary>
    public List<double> RepeatOpsPerSecond { get; set; } = [];

    /// <summary>Operations per second of each task, mean over repeats.</summary>
    public List<double> PerThreadOpsPerSecond { get; set; } = [];

    /// <summary>The slowest task's operations per second (will-it-scale's per-task min: fairness); null in older results.</summary>
    public double? PerThreadMin { get; set; }

    /// <summary>The fastest task's operations per second (will-it-scale's per-task max); null in older results.</summary>
    public double? PerThreadMax { get; set; }

    /// <summary>
    /// Operations per CPU-second (pft's per-CPU rate, for regressions): <see cref="OpsPerSecond"/> divided by
    /// <see cref="Threads"/>. A measured task's CPU thread never sleeps while it runs its loop (it spins on locks and
    /// acks; only an mmap-lock wait may block it), so its CPU time is taken as the window's wall time, and busy CPUs =
    /// threads: the figure falls as waiting grows even when the waiting CPU was descheduled. Null in older results.
    /// </summary>
    public double? OpsPerCpuSecond { get; set; }

    /// <summary>
    /// will-it-scale's <c>linear</c> column: the 1-thread point's <see cref="OpsPerSecond"/> (same workload, strategy
    /// and mode) × <see cref="Threads"/>, the throughput of perfect scaling; null without a 1-thread point.
    /// </summary>
    public double? Linear { get; set; }

    /// <summary>
    /// Wait-time histograms by kind ("mmapRead", "mmapWrite", "ptl", "shootdownAck": <see cref="Smp.WaitHistogram.Name"/>),
    /// each the counts of the six decade buckets of <see cref="Smp.WaitHistogram.BucketLabels"/>, summed over the measured
    /// tasks' CPUs (a background writer's CPU excluded) and the repeats' windows; only waits that waited are counted.
    /// Null in older results.
    /// </summary>
    public Dictionary<string, List<long>>? WaitHistograms { get; set; }

    /// <summary>
    /// Total wait time by kind (the names of <see cref="WaitHistograms"/>), seconds, summed over the measured tasks' CPUs
    /// and the repeats' windows (virtual seconds for predicted points). Null in older results.
    /// </summary>
    public Dictionary<string, double>? WaitSeconds { get; set; }

    /// <summary>
    /// The memory-management locks by name ("zone", "lru", "memcg": <see cref="ScalingExperiment.MmLockCounters"/>),
    /// summed over every CPU and the repeats' windows; null in older results.
    /// </summary>
    public Dictionary<string, MmLockStats>? MmLocks { get; set; }

    /// <summary>Background-task (writer) operations per second, mean over repeats.</summary>
    public double BackgroundOpsPerSecond { get; set; }

    /// <summary>Measured seconds, summed over repeats (the window counters below cover).</summary>
    public double MeasuredSeconds { get; set; }

    /// <summary>
    /// What the point's strategy declares it counts (<see cref="FaultStrategy.Outcomes"/>), in its order, summed over
    /// the repeats' windows; empty for a strategy that declares none, and for native points. Null only in a document
    /// written before schema version 4 and not read through <see cref="ScalingResult.FromJson"/>, which fills it.
    /// </summary>
    public List<OutcomeCount>? Outcomes { get; set; }

    /// <summary>Schema 3 and older: speculative attempts in the windows (0, and not written, from version 4: see <see cref="Outcomes"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public long SpeculativeAttempts { get; set; }

    /// <summary>Schema 3 and older: speculative successes in the windows (0, and not written, from version 4: see <see cref="Outcomes"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public long SpeculativeSuccesses { get; set; }

    /// <summary>Schema 3 and older: speculative successes / attempts (null from version 4: see <see cref="SuccessRate"/>).</summary>
    public double? SpeculativeSuccessRate { get; set; }

    /// <summary>Schema 3 and older: speculative aborts by reason (null from version 4: see <see cref="Outcomes"/>).</summary>
    public Dictionary<string, long>? AbortReasons { get; set; }

    /// <summary>Schema 3 and older: per-VMA lock outcomes, success, abort, retry, miss (null from version 4: see <see cref="Outcomes"/>).</summary>
    public Dictionary<string, long>? VmaLock { get; set; }

    /// <summary>Time CPUs waited for the mmap lock, milliseconds per measured second (summed over CPUs).</summary>
    public double MmapLockWaitMsPerSecond { get; set; }

    /// <summary>Flush IPIs sent per second.</summary>
    public double IpisPerSecond { get; set; }

    /// <summary>TLB hits / accesses, or null when there were none (native workloads).</summary>
    public double? TlbHitRate { get; set; }

    /// <summary>Frames allocated per second.</summary>
    public double FramesAllocatedPerSecond { get; set; }

    /// <summary>Workload-specific metrics, mean over repeats (for example mmapWriteHeldShare).</summary>
    public Dictionary<string, double> Metrics { get; set; } = [];

    /// <summary>Every CPU counter, summed over CPUs and over the repeats' windows.</summary>
    public Dictionary<string, long> Counters { get; set; } = [];

    /// <summary>
    /// The strategy's success rate: its <see cref="FaultOutcomeKind.Success"/> counts over its
    /// <see cref="FaultOutcomeKind.Attempt"/> counts when it declares any, else over its success and
    /// <see cref="FaultOutcomeKind.Abort"/> counts; null when the denominator is 0 or nothing is declared.
    /// </summary>
    public double? SuccessRate()
    {
        long attempts = OutcomeTotal(FaultOutcomeKind.Attempt);
        long successes = OutcomeTotal(FaultOutcomeKind.Success);
        long denominator = Outcomes?.Exists(o => o.Kind == FaultOutcomeKind.Attempt) == true ? attempts : successes + OutcomeTotal(FaultOutcomeKind.Abort);
        return denominator > 0 ? successes / (double)denominator : null;
    }

    /// <summary>The sum of the point's outcomes of one kind (0 without outcomes).</summary>
    /// <param name="kind">The kind.</param>
    public long OutcomeTotal(FaultOutcomeKind kind) => Outcomes?.Where(o => o.Kind == kind).Sum(o => o.Count) ?? 0;

    /// <summary>
    /// The outcomes a schema 1–3 point recorded in its own fields, in the version 4 form: attempts and successes, each
    /// abort reason as "abort: reason" (access errors as an <see cref="FaultOutcomeKind.Other"/> outcome, as
    /// version 3 counted them apart), then the per-VMA lock's counts; groups that counted nothing are left out.
    /// </summary>
    public List<OutcomeCount> OutcomesFromLegacyFields()
    {
        var list = new List<OutcomeCount>();
        if (SpeculativeAttempts > 0)
        {
            list.Add(new OutcomeCount("attempt", FaultOutcomeKind.Attempt, SpeculativeAttempts));
            list.Add(new OutcomeCount("success", FaultOutcomeKind.Success, SpeculativeSuccesses));
            foreach ((string reason, long count) in AbortReasons ?? [])
            {
                // Version 3 wrote access errors among the abort reasons, though they end in SIGSEGV, not a fallback.
                list.Add(reason == "access-error" ? new OutcomeCount(reason, FaultOutcomeKind.Other, count) : new OutcomeCount("abort: " + reason, FaultOutcomeKind.Abort, count));
            }
        }

        if (VmaLock is { } vma && vma.Values.Sum() > 0)
        {
            foreach ((string name, long count) in vma)
            {
                // Version 3's per-VMA keys: success; abort and retry (both fell back); miss (looked up again).
                FaultOutcomeKind kind = name switch
                {
                    "success" => FaultOutcomeKind.Success,
                    "miss" => FaultOutcomeKind.Retry,
                    _ => FaultOutcomeKind.Abort,
                };
                list.Add(new OutcomeCount(name, kind, count));
            }
        }

        return list;
    }
}

/// <summary>One declared outcome of a point's strategy (<see cref="FaultOutcome"/>) and how many times it happened.</summary>
/// <param name="Name">The outcome's name ("success", "abort: seq-changed").</param>
/// <param name="Kind">What it counts.</param>
/// <param name="Count">The count, summed over CPUs and over the repeats' windows.</param>
public sealed record OutcomeCount(
    string Name,
    [property: JsonConverter(typeof(JsonStringEnumConverter<FaultOutcomeKind>))] FaultOutcomeKind Kind,
    long Count);

/// <summary>The machine an experiment ran on.</summary>
public sealed class MachineInfo
{
    /// <summary>CPU model (from /proc/cpuinfo where available).</summary>
    public string CpuModel { get; set; } = string.Empty;

    /// <summary>Logical processors in the machine.</summary>
    public int LogicalCores { get; set; }

    /// <summary>Physical cores (distinct core ids per package in /proc/cpuinfo), or null when unknown.</summary>
    public int? PhysicalCores { get; set; }

    /// <summary>CPU packages (sockets), or null when unknown.</summary>
    public int? Sockets { get; set; }

    /// <summary>Hardware threads per core (2 with SMT siblings), or null when unknown.</summary>
    public int? ThreadsPerCore { get; set; }

    /// <summary>The kernel release (uname -r, from /proc/sys/kernel/osrelease), or null when unknown.</summary>
    public string? KernelRelease { get; set; }

    /// <summary>Cores this process was allowed to use.</summary>
    public int AllowedCores { get; set; }

    /// <summary>Operating system.</summary>
    public string Os { get; set; } = string.Empty;

    /// <summary>.NET runtime.</summary>
    public string DotNet { get; set; } = string.Empty;

    /// <summary>Physical memory available to the process, bytes.</summary>
    public long MemoryBytes { get; set; }

    /// <summary>The git commit of the working tree, when git could tell.</summary>
    public string? GitCommit { get; set; }

    /// <summary>True when the working tree had uncommitted changes.</summary>
    public bool? GitDirty { get; set; }
}

/// <summary>One memory-management lock's statistics in a point's windows (<see cref="ScalingPoint.MmLocks"/>).</summary>
public sealed class MmLockStats
{
    /// <summary>
    /// Acquisitions: the zone lock per per-CPU list refill or drain, the LRU lock per folio batch added or freed; for
    /// memcg (atomic counters, no lock), walks of the page-counter hierarchy.
    /// </summary>
    public long Acquisitions { get; set; }

    /// <summary>Acquisitions that had to spin; for memcg, charges the cgroup's limit refused.</summary>
    public long Contentions { get; set; }

    /// <summary>Seconds spent spinning for the lock (virtual seconds for predicted points); for memcg, seconds in the walks.</summary>
    public double WaitSeconds { get; set; }
}

/// <summary>Accesses per fault to one kind of cache line, in a predicted point (<see cref="ScalingPoint.LinesPerFault"/>).</summary>
public sealed class SharedLineOps
{
    /// <summary>Loads per fault.</summary>
    public double Loads { get; set; }

    /// <summary>Stores per fault.</summary>
    public double Stores { get; set; }

    /// <summary>Read-modify-writes (atomics, lock acquisitions) per fault.</summary>
    public double Rmws { get; set; }

    /// <summary>Accesses per fault that found the line in another CPU's cache (the cost model's expectation).</summary>
    public double Transfers { get; set; }
}
