using System.CommandLine;
using System.Globalization;
using SpecVm.Faults;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Workloads;
using SpecVm.Mm;

namespace SpecVm.Benchmarks.Cli;

/// <summary>The options of <c>scale</c> (and of the default command), and their validation.</summary>
internal sealed class ScaleOptions
{
    /// <summary>The default comparison's workloads.</summary>
    public static readonly string[] DefaultWorkloads =
    [
        "database-load", "database-load-nowriter", "page-fault1",
        "native-database-load", "native-database-load-nowriter", "native-page-fault1",
    ];

    private Option<string[]> _workloads = null!;
    private Option<string[]> _strategies = null!;
    private Option<string?> _threads = null!;
    private Option<double> _duration = null!;
    private Option<double> _warmup = null!;
    private Option<int> _repeats = null!;
    private Option<string?> _out = null!;
    private Option<bool> _oversubscribe = null!;
    private Option<bool> _verify = null!;
    private Option<bool> _targeted = null!;
    private Option<string> _lockLayout = null!;
    private Option<bool> _noDowngrade = null!;
    private Option<string> _thp = null!;
    private Option<string> _kernel = null!;
    private Option<long> _mappingMib = null!;
    private Option<long> _sliceMib = null!;
    private Option<double> _writerRate = null!;
    private Option<bool> _allowDebug = null!;
    private Option<bool> _dryRun = null!;
    private Option<bool> _quick = null!;
    private Option<string?> _virtual = null!;
    private Option<string?> _calibration = null!;
    private Option<double?> _quantumNs = null!;
    private Option<double?> _virtualDurationMs = null!;
    private Option<double?> _virtualWarmupMs = null!;
    private Option<bool> _noBand = null!;
    private Option<bool> _noFloor = null!;
    private Option<bool>? _noPrediction;

    /// <summary>The options of <c>scale</c>; with <paramref name="root"/>, those of the default comparison, which adds a predicted sweep.</summary>
    public static ScaleOptions Create(bool root = false) => new()
    {
        _noPrediction = root
            ? new Option<bool>("--no-prediction") { Description = "Skip the predicted sweep (virtual time) that the default comparison adds after measuring." }
            : null,
        _workloads = new Option<string[]>("--workload", "-w")
        {
            Description = $"Workloads (repeatable or comma-separated): {string.Join(", ", WorkloadCatalog.Names)}. Default: {string.Join(", ", DefaultWorkloads)}.",
            AllowMultipleArgumentsPerToken = true,
        },
        _strategies = new Option<string[]>("--strategy", "-s")
        {
            Description = $"Fault strategies (repeatable or comma-separated): {string.Join(", ", StrategyCatalog.Names)}. Default: {string.Join(", ", StrategyCatalog.DefaultNames)}.",
            AllowMultipleArgumentsPerToken = true,
        },
        _threads = new Option<string?>("--threads", "-t")
        {
            Description = "Thread counts: a list and/or ranges, e.g. 1,2,4 or 1-8. Default: 1..cores.",
        },
        _duration = new Option<double>("--duration", "-d")
        {
            Description = "Measured seconds per run.",
            DefaultValueFactory = _ => 1.5,
        },
        _warmup = new Option<double>("--warmup")
        {
            Description = "Warm-up seconds per run.",
            DefaultValueFactory = _ => 0.5,
        },
        _repeats = new Option<int>("--repeats", "-r")
        {
            Description = "Runs per point (mean and standard deviation are over these).",
            DefaultValueFactory = _ => 3,
        },
        _out = new Option<string?>("--out", "-o")
        {
            Description = "Output directory. Default: results/<UTC timestamp>.",
        },
        _oversubscribe = new Option<bool>("--oversubscribe")
        {
            Description = "Allow more threads than cores (time-shared CPUs; spinning then wastes time slices).",
        },
        _verify = new Option<bool>("--verify")
        {
            Description = "After each model run, before teardown, check the invariants (VMAs, PTEs, frames); a violation fails the run.",
        },
        _targeted = new Option<bool>("--targeted-shootdowns")
        {
            Description = "Targeted TLB shootdowns: interrupt only the CPUs whose TLBs a PTE table served (RadixVM's idea; Linux interrupts the mm's whole CPU mask).",
        },
        _lockLayout = new Option<string>("--lock-layout")
        {
            Description = $"Where the address spaces put the mmap lock's count and the mm-wide page-table lock: {string.Join(", ", MmLockLines.Names)} "
                + $"(default {MmLockLines.Name(LockLayout.Padded)}: a line each; shared-line: one 64-byte line, to show false sharing). The result records it.",
            DefaultValueFactory = _ => MmLockLines.Name(LockLayout.Padded),
        },
        _noDowngrade = new Option<bool>("--no-unmap-downgrade")
        {
            Description = "munmap holds the mmap lock for write through the zap and shootdowns, as the 4.14 kernels did (default: as the kernel profile says; 4.20+ downgrade).",
        },
        _thp = new Option<string>("--thp")
        {
            Description = "Transparent huge pages for the model's anonymous memory: always (a fault in a VMA covering an aligned 2 MiB maps a 2 MiB page; the speculative paths leave those faults to the classic path, as published) or never (the default; LKP splits every report by this).",
            DefaultValueFactory = _ => "never",
        },
        _kernel = new Option<string>("--kernel")
        {
            Description = $"The Linux version the model behaves as: {string.Join(", ", KernelProfile.Names)} (default {KernelProfile.Default.Name}, the newest). "
                + "It sets the munmap downgrade, the gather batch and the other version-dependent settings (docs/design.md §6); the result records it.",
            DefaultValueFactory = _ => KernelProfile.Default.Name,
        },
        _mappingMib = new Option<long>("--mapping-mib")
        {
            Description = $"page-fault mapping size per round, MiB (will-it-scale: 128). With --virtual the default is {VirtualMappingMib}: a virtual window lasts milliseconds, and a 128 MiB round (32,768 faults) would never reach its unmap.",
            DefaultValueFactory = _ => 128,
        },
        _sliceMib = new Option<long>("--slice-mib")
        {
            Description = $"database-load bytes per loader, MiB. With --virtual the default is {VirtualSliceMib}, for the same reason as --mapping-mib.",
            DefaultValueFactory = _ => DatabaseLoad.DefaultSliceBytes >> 20,
        },
        _writerRate = new Option<double>("--writer-rate")
        {
            Description = "database-load writer operations per second (map, touch, unmap 64 KiB).",
            DefaultValueFactory = _ => DatabaseLoad.DefaultWriterOpsPerSecond,
        },
        _allowDebug = new Option<bool>("--allow-debug")
        {
            Description = "Measure even though this is a Debug build (about 3x slower; recorded in results.json). Without it a Debug build refuses to measure.",
        },
        _quick = new Option<bool>("--quick")
        {
            Description = $"A curated subset that runs in about a minute: workloads {string.Join(", ", QuickWorkloads)} (unless --workload), "
                + "0.2 s warm-up, 0.5 s windows, 1 repeat (unless given); with --virtual, 0.2 ms + 1 ms virtual and no band.",
        },
        _dryRun = new Option<bool>("--dry-run")
        {
            Description = "Check the options, print the plan (runs and estimated time) and exit without measuring or writing anything.",
        },
        _noFloor = new Option<bool>("--no-floor")
        {
            Description = "Skip the physical floor: pinned threads zeroing (or, for copy-on-write workloads, copying) 4 KiB pages at each thread count, "
                + "which the report and plots show as each fault workload's limit (measured runs only; about one window per thread count).",
        },
        _virtual = new Option<string?>("--virtual")
        {
            Description = $"Predict instead of measure: run the model workloads in virtual time with a cost model, a preset ({string.Join(", ", CostModel.PresetNames)}) or a cost-model JSON file. "
                + $"Thread counts may exceed this machine's cores (up to {MachineOptions.MaxCpus} CPUs, background CPUs included; default {string.Join(",", DefaultVirtualThreads)}); "
                + "results are deterministic, so one repeat is the default. Native workloads cannot run in virtual time.",
            HelpName = "PRESET|FILE",
        },
        _calibration = new Option<string?>("--calibration")
        {
            Description = "With a --virtual preset (and for the default comparison's predicted sweep, which otherwise calibrates first): the local costs (fault, TLB hit, page zero/copy, VMA edit, core-to-core transfer) from a file written by `calibrate`. Without it, the presets use the built-in calibration.",
            HelpName = "FILE",
        },
        _quantumNs = new Option<double?>("--quantum-ns")
        {
            Description = $"With --virtual: how far a simulated CPU may run ahead of the next before it hands over, ns (0: exact order). Default {DefaultQuantum.Ticks * 100}: "
                + "predictions stay within about 3% of exact order up to 2 µs (database-load-nowriter and page-fault1, mmap-lock and speculative, 8 CPUs: docs/design.md §8); longer is faster and less exact.",
        },
        _virtualDurationMs = new Option<double?>("--virtual-duration-ms")
        {
            Description = $"With --virtual: the measured window in virtual time, ms. Default {Defaults.Duration.TotalMilliseconds.ToString(CultureInfo.InvariantCulture)}.",
        },
        _virtualWarmupMs = new Option<double?>("--virtual-warmup-ms")
        {
            Description = $"With --virtual: the warm-up in virtual time, ms. Default {Defaults.Warmup.TotalMilliseconds.ToString(CultureInfo.InvariantCulture)}.",
        },
        _noBand = new Option<bool>("--no-band")
        {
            Description = "With --virtual: skip the sensitivity band (each point is otherwise run twice more with the uncertain constants at 0.5x and 1.5x).",
        },
    };

    /// <summary>The page-fault mapping per round in virtual time, MiB, unless <c>--mapping-mib</c> says otherwise.</summary>
    public const long VirtualMappingMib = 4;

    /// <summary>The database-load slice per loader in virtual time, MiB, unless <c>--slice-mib</c> says otherwise.</summary>
    public const long VirtualSliceMib = 2;

    /// <summary>
    /// The command line's quantum: the library's (2 µs). Since line prices follow the virtual interleaving, predictions
    /// at 2 µs stay within about 3% of exact order (host model, 8 CPUs: database-load-nowriter mmap-lock 5.72M against
    /// 5.60M at 0, speculative 12.45M against 12.32M; page-fault1 mmap-lock 4.78M against 4.66M); docs/design.md §8.
    /// </summary>
    public static readonly TimeSpan DefaultQuantum = new VirtualTimeOptions().Quantum;

    /// <summary>Thread counts of a virtual run without <c>--threads</c>.</summary>
    public static readonly int[] DefaultVirtualThreads = [1, 2, 4, 8, 16, 32];

    /// <summary>The library's virtual-time defaults (window), quoted in the help and used when no option is given.</summary>
    private static readonly VirtualTimeOptions Defaults = new();

    public void AddTo(Command command)
    {
        command.Options.Add(_workloads);
        command.Options.Add(_strategies);
        command.Options.Add(_threads);
        command.Options.Add(_duration);
        command.Options.Add(_warmup);
        command.Options.Add(_repeats);
        command.Options.Add(_out);
        command.Options.Add(_oversubscribe);
        command.Options.Add(_verify);
        command.Options.Add(_targeted);
        command.Options.Add(_lockLayout);
        command.Options.Add(_noDowngrade);
        command.Options.Add(_thp);
        command.Options.Add(_kernel);
        command.Options.Add(_mappingMib);
        command.Options.Add(_sliceMib);
        command.Options.Add(_writerRate);
        command.Options.Add(_allowDebug);
        command.Options.Add(_dryRun);
        command.Options.Add(_quick);
        command.Options.Add(_virtual);
        command.Options.Add(_calibration);
        command.Options.Add(_quantumNs);
        command.Options.Add(_virtualDurationMs);
        command.Options.Add(_virtualWarmupMs);
        command.Options.Add(_noBand);
        command.Options.Add(_noFloor);
        if (_noPrediction != null)
        {
            command.Options.Add(_noPrediction);
        }
    }

    /// <summary>The workloads of <c>--quick</c>: the article's case, will-it-scale's page_fault1, and a shootdown-heavy test.</summary>
    public static readonly string[] QuickWorkloads = ["database-load", "page-fault1", "tlb-flush1"];

    /// <summary>Reads and validates the parsed options; throws <see cref="UsageException"/> on bad input.</summary>
    public ScaleSettings Read(ParseResult p)
    {
        VirtualTimeOptions? virtualTime = ReadVirtualTime(p);
        bool predicted = virtualTime != null;
        bool quick = p.GetValue(_quick);
        string[] defaultWorkloads = quick ? QuickWorkloads : predicted ? DefaultWorkloads.Where(w => !w.StartsWith("native-", StringComparison.Ordinal)).ToArray() : DefaultWorkloads;
        string[] workloadNames = Split(p.GetValue(_workloads), defaultWorkloads);
        string[] strategyNames = Split(p.GetValue(_strategies), [.. StrategyCatalog.DefaultNames]);

        // A virtual window is milliseconds long: the rounds must be small enough to finish (map, touch, unmap) in it.
        long mapping = predicted && !Given(p, _mappingMib) ? VirtualMappingMib : p.GetValue(_mappingMib);
        long slice = predicted && !Given(p, _sliceMib) ? VirtualSliceMib : p.GetValue(_sliceMib);
        double writerRate = p.GetValue(_writerRate);
        if (mapping < 1 || mapping > 1 << 20)
        {
            throw new UsageException($"--mapping-mib must be between 1 and {1 << 20} (got {mapping}).");
        }

        if (slice < 1 || slice > 1 << 20)
        {
            throw new UsageException($"--slice-mib must be between 1 and {1 << 20} (got {slice}).");
        }

        if (!(writerRate > 0) || double.IsInfinity(writerRate))
        {
            throw new UsageException($"--writer-rate must be a positive number (got {writerRate}); use the database-load-nowriter workload for no writer.");
        }

        var workloads = new List<Workload>();
        foreach (string name in workloadNames)
        {
            Workload w = WorkloadCatalog.TryCreate(name, mapping << 20, slice << 20, writerRate)
                ?? throw new UsageException($"--workload: unknown workload '{name}'. Known workloads: {string.Join(", ", WorkloadCatalog.Names)}.");
            if (predicted && w.IsNative)
            {
                throw new UsageException($"--workload: '{name}' runs on the real kernel and cannot run in virtual time (--virtual); choose model workloads ({string.Join(", ", WorkloadCatalog.Names.Where(n => !n.StartsWith("native-", StringComparison.Ordinal)))}).");
            }

            workloads.Add(w);
        }

        var strategies = new List<FaultStrategy>();
        foreach (string name in strategyNames)
        {
            strategies.Add(StrategyCatalog.TryCreate(name)
                ?? throw new UsageException($"--strategy: unknown strategy '{name}'. Known strategies: {string.Join(", ", StrategyCatalog.Names)}."));
        }

        bool oversubscribe = p.GetValue(_oversubscribe);
        int cores = Affinity.AllowedCores.Count;
        string? threadText = p.GetValue(_threads);
        List<int> threads = predicted && string.IsNullOrWhiteSpace(threadText) ? [.. DefaultVirtualThreads] : ParseThreads(threadText, cores);
        int background = workloads.Max(w => w.BackgroundTasks);
        if (predicted)
        {
            if (threads.Max() + background > MachineOptions.MaxCpus)
            {
                throw new UsageException($"--threads: at most {MachineOptions.MaxCpus - background} threads in virtual time with these workloads (a simulated machine has at most {MachineOptions.MaxCpus} CPUs, {background} of them background CPUs); got {threads.Max()}.");
            }
        }
        else
        {
            if (!oversubscribe && threads.Max() > cores)
            {
                throw new UsageException($"--threads: {threads.Max()} threads but this machine lets SpecVm use {cores} cores; pass --oversubscribe to run more threads than cores, or --virtual to predict them.");
            }

            if (threads.Max() + 1 > MachineOptions.MaxCpus)
            {
                throw new UsageException($"--threads: at most {MachineOptions.MaxCpus - 1} threads (got {threads.Max()}).");
            }
        }

        double duration = quick && !Given(p, _duration) ? 0.5 : p.GetValue(_duration);
        double warmup = quick && !Given(p, _warmup) ? 0.2 : p.GetValue(_warmup);
        int repeats = (predicted || quick) && !Given(p, _repeats) ? 1 : p.GetValue(_repeats);
        if (!(duration > 0) || duration > 3600)
        {
            throw new UsageException($"--duration must be between 0 and 3600 seconds (got {duration}).");
        }

        if (!(warmup >= 0) || warmup > 3600)
        {
            throw new UsageException($"--warmup must be between 0 and 3600 seconds (got {warmup}).");
        }

        if (repeats < 1 || repeats > 1000)
        {
            throw new UsageException($"--repeats must be between 1 and 1000 (got {repeats}).");
        }

        if (predicted)
        {
            // In virtual time the window is virtual: the wall-clock options would be silently ignored.
            foreach (Option o in (Option[])[_duration, _warmup, _oversubscribe, _allowDebug, _noFloor])
            {
                if (Given(p, o))
                {
                    throw new UsageException($"{o.Name} does not apply with --virtual (the window is virtual time: use --virtual-duration-ms and --virtual-warmup-ms).");
                }
            }

            duration = virtualTime!.Duration.TotalSeconds;
            warmup = virtualTime.Warmup.TotalSeconds;
        }

        string layoutName = p.GetValue(_lockLayout) ?? MmLockLines.Name(LockLayout.Padded);
        LockLayout lockLayout = MmLockLines.TryParse(layoutName)
            ?? throw new UsageException($"--lock-layout: unknown layout '{layoutName}' (known: {string.Join(", ", MmLockLines.Names)}).");
        string kernelName = p.GetValue(_kernel) ?? KernelProfile.Default.Name;
        KernelProfile kernel = KernelProfile.TryGet(kernelName)
            ?? throw new UsageException($"--kernel: unknown kernel profile '{kernelName}' (known: {string.Join(", ", KernelProfile.Names)}).");
        TransparentHugePageMode thp = (p.GetValue(_thp) ?? "never") switch
        {
            "always" => TransparentHugePageMode.Always,
            "never" => TransparentHugePageMode.Never,
            string other => throw new UsageException($"--thp: '{other}' is not a mode (always or never)."),
        };
        string outDir = p.GetValue(_out) ?? Path.Combine("results", DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
        return new ScaleSettings(workloads, strategies, threads, TimeSpan.FromSeconds(warmup), TimeSpan.FromSeconds(duration), repeats, outDir, oversubscribe, p.GetValue(_verify))
        {
            MappingMib = mapping,
            SliceMib = slice,
            TargetedShootdowns = p.GetValue(_targeted),
            LockLayout = lockLayout,
            Kernel = kernel,
            DowngradeOnUnmap = kernel.DowngradeOnUnmap && !p.GetValue(_noDowngrade),
            TransparentHugePages = thp,
            WriterOpsPerSecond = writerRate,
            AllowDebug = p.GetValue(_allowDebug),
            DryRun = p.GetValue(_dryRun),
            VirtualTime = virtualTime,
            MappingGiven = Given(p, _mappingMib),
            SliceGiven = Given(p, _sliceMib),
            CalibrationFile = predicted ? null : p.GetValue(_calibration),
            MeasureFloor = !p.GetValue(_noFloor),
            Predict = _noPrediction != null && !predicted && !p.GetValue(_noPrediction),
        };
    }

    /// <summary>The virtual-time options of <c>--virtual</c> and its companions, or null without <c>--virtual</c>.</summary>
    private VirtualTimeOptions? ReadVirtualTime(ParseResult p)
    {
        string? spec = p.GetValue(_virtual);
        if (spec == null)
        {
            // The default comparison's predicted sweep takes --calibration too.
            foreach (Option o in (Option[])(_noPrediction != null ? [_quantumNs, _virtualDurationMs, _virtualWarmupMs, _noBand] : [_calibration, _quantumNs, _virtualDurationMs, _virtualWarmupMs, _noBand]))
            {
                if (Given(p, o))
                {
                    throw new UsageException($"{o.Name} applies only with --virtual.");
                }
            }

            return null;
        }

        CostModel model = VirtualModel.Resolve(spec, p.GetValue(_calibration));
        double quantum = p.GetValue(_quantumNs) ?? DefaultQuantum.Ticks * 100.0;
        bool quick = p.GetValue(_quick);
        double durationMs = p.GetValue(_virtualDurationMs) ?? (quick ? 1 : Defaults.Duration.TotalMilliseconds);
        double warmupMs = p.GetValue(_virtualWarmupMs) ?? (quick ? 0.2 : Defaults.Warmup.TotalMilliseconds);
        if (!(quantum >= 0) || quantum > 1e9)
        {
            throw new UsageException($"--quantum-ns must be between 0 and 1e9 (got {quantum.ToString(CultureInfo.InvariantCulture)}).");
        }

        if (!(durationMs > 0) || durationMs > 10_000)
        {
            throw new UsageException($"--virtual-duration-ms must be between 0 and 10000 (got {durationMs.ToString(CultureInfo.InvariantCulture)}).");
        }

        if (!(warmupMs >= 0) || warmupMs > 10_000)
        {
            throw new UsageException($"--virtual-warmup-ms must be between 0 and 10000 (got {warmupMs.ToString(CultureInfo.InvariantCulture)}).");
        }

        return new VirtualTimeOptions
        {
            Model = model,
            Quantum = TimeSpan.FromTicks((long)Math.Round(quantum / 100)), // TimeSpan's resolution is 100 ns
            Duration = TimeSpan.FromTicks((long)Math.Round(durationMs * TimeSpan.TicksPerMillisecond)),
            Warmup = TimeSpan.FromTicks((long)Math.Round(warmupMs * TimeSpan.TicksPerMillisecond)),
            Band = !p.GetValue(_noBand) && !quick,
        };
    }

    /// <summary>True when the user typed <paramref name="option"/> (not its default).</summary>
    private static bool Given(ParseResult p, Option option) => p.GetResult(option) is { Implicit: false };

    /// <summary>
    /// Creates <paramref name="dir"/> and checks a file can be written there, so an unwritable <c>--out</c> is bad
    /// input reported before minutes of measuring, not an I/O failure after them.
    /// </summary>
    /// <param name="dir">The output directory.</param>
    public static void EnsureWritable(string dir)
    {
        try
        {
            Directory.CreateDirectory(dir);
            string probe = Path.Combine(dir, $".specvm-write-test-{Environment.ProcessId}");
            File.WriteAllText(probe, string.Empty);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new UsageException($"--out '{dir}' is not a writable directory ({e.Message}).");
        }
    }

    private static string[] Split(string[]? values, string[] defaults)
    {
        if (values == null || values.Length == 0)
        {
            return defaults;
        }

        return values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).Distinct().ToArray();
    }

    /// <summary>Parses "1,2,4" and "1-8" (mixed); null means 1..cores.</summary>
    internal static List<int> ParseThreads(string? text, int cores)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return Enumerable.Range(1, cores).ToList();
        }

        var result = new SortedSet<int>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int dash = part.IndexOf('-', 1);
            if (dash > 0)
            {
                int lo = ParseCount(part[..dash], text), hi = ParseCount(part[(dash + 1)..], text);
                if (hi < lo)
                {
                    throw new UsageException($"--threads range '{part}' runs backwards.");
                }

                for (int i = lo; i <= hi; i++)
                {
                    result.Add(i);
                }
            }
            else
            {
                result.Add(ParseCount(part, text));
            }
        }

        if (result.Count == 0)
        {
            throw new UsageException($"--threads '{text}' lists no thread counts.");
        }

        return [.. result];
    }

    private static int ParseCount(string s, string whole)
    {
        if (!int.TryParse(s, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int n))
        {
            throw new UsageException($"--threads '{whole}': '{s}' is not a whole number.");
        }

        if (n < 1)
        {
            throw new UsageException($"--threads '{whole}': thread counts must be 1 or more (got {n}).");
        }

        return n;
    }
}

/// <summary>Validated settings of a scaling run.</summary>
internal sealed record ScaleSettings(
    IReadOnlyList<Workload> Workloads,
    IReadOnlyList<FaultStrategy> Strategies,
    IReadOnlyList<int> Threads,
    TimeSpan Warmup,
    TimeSpan Duration,
    int Repeats,
    string OutDir,
    bool Oversubscribe,
    bool Verify = false)
{
    /// <summary>page-fault mapping size per round, MiB.</summary>
    public long MappingMib { get; init; } = 128;

    /// <summary>Targeted TLB shootdowns in the model's address spaces.</summary>
    public bool TargetedShootdowns { get; init; }

    /// <summary>Where the address spaces put the mmap lock's count and the page-table lock (<c>--lock-layout</c>).</summary>
    public LockLayout LockLayout { get; init; } = LockLayout.Padded;

    /// <summary>The kernel profile (<c>--kernel</c>).</summary>
    public KernelProfile Kernel { get; init; } = KernelProfile.Default;

    /// <summary>munmap downgrades the mmap lock before zapping (Linux 4.20+; the profile's, unless <c>--no-unmap-downgrade</c>).</summary>
    public bool DowngradeOnUnmap { get; init; } = true;

    /// <summary>Transparent huge pages in the model's address spaces (<c>--thp</c>).</summary>
    public TransparentHugePageMode TransparentHugePages { get; init; }

    /// <summary>database-load bytes per loader, MiB.</summary>
    public long SliceMib { get; init; } = DatabaseLoad.DefaultSliceBytes >> 20;

    /// <summary>database-load writer operations per second.</summary>
    public double WriterOpsPerSecond { get; init; } = DatabaseLoad.DefaultWriterOpsPerSecond;

    /// <summary>Measure even in a Debug build.</summary>
    public bool AllowDebug { get; init; }

    /// <summary>Print the plan and exit without measuring.</summary>
    public bool DryRun { get; init; }

    /// <summary>Predict in virtual time with these options instead of measuring; null measures.</summary>
    public VirtualTimeOptions? VirtualTime { get; init; }

    /// <summary>True when <c>--mapping-mib</c> was given (a virtual run otherwise picks its own default).</summary>
    public bool MappingGiven { get; init; }

    /// <summary>True when <c>--slice-mib</c> was given.</summary>
    public bool SliceGiven { get; init; }

    /// <summary>The default comparison: add a predicted sweep after measuring.</summary>
    public bool Predict { get; init; }

    /// <summary>Measure the physical floor of the fault workloads (on unless <c>--no-floor</c>; virtual runs have none).</summary>
    public bool MeasureFloor { get; init; } = true;

    /// <summary>The default comparison: the predicted sweep's calibration file (null: calibrate first).</summary>
    public string? CalibrationFile { get; init; }
}
