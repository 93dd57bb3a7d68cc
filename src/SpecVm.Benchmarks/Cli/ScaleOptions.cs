using System.CommandLine;
using SpecVm.Faults;
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
    private Option<bool> _noDowngrade = null!;
    private Option<long> _mappingMib = null!;
    private Option<long> _sliceMib = null!;
    private Option<double> _writerRate = null!;
    private Option<bool> _allowDebug = null!;
    private Option<bool> _dryRun = null!;

    public static ScaleOptions Create() => new()
    {
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
        _noDowngrade = new Option<bool>("--no-unmap-downgrade")
        {
            Description = "munmap holds the mmap lock for write through the zap and shootdowns, as the 4.14 kernels did (default: downgrade, as Linux 4.20+).",
        },
        _mappingMib = new Option<long>("--mapping-mib")
        {
            Description = "page-fault mapping size per round, MiB (will-it-scale: 128).",
            DefaultValueFactory = _ => 128,
        },
        _sliceMib = new Option<long>("--slice-mib")
        {
            Description = "database-load bytes per loader, MiB.",
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
        _dryRun = new Option<bool>("--dry-run")
        {
            Description = "Check the options, print the plan (runs and estimated time) and exit without measuring or writing anything.",
        },
    };

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
        command.Options.Add(_noDowngrade);
        command.Options.Add(_mappingMib);
        command.Options.Add(_sliceMib);
        command.Options.Add(_writerRate);
        command.Options.Add(_allowDebug);
        command.Options.Add(_dryRun);
    }

    /// <summary>Reads and validates the parsed options; throws <see cref="UsageException"/> on bad input.</summary>
    public ScaleSettings Read(ParseResult p)
    {
        string[] workloadNames = Split(p.GetValue(_workloads), DefaultWorkloads);
        string[] strategyNames = Split(p.GetValue(_strategies), [.. StrategyCatalog.DefaultNames]);
        long mapping = p.GetValue(_mappingMib);
        long slice = p.GetValue(_sliceMib);
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
            workloads.Add(WorkloadCatalog.TryCreate(name, mapping << 20, slice << 20, writerRate)
                ?? throw new UsageException($"--workload: unknown workload '{name}'. Known workloads: {string.Join(", ", WorkloadCatalog.Names)}."));
        }

        var strategies = new List<FaultStrategy>();
        foreach (string name in strategyNames)
        {
            strategies.Add(StrategyCatalog.TryCreate(name)
                ?? throw new UsageException($"--strategy: unknown strategy '{name}'. Known strategies: {string.Join(", ", StrategyCatalog.Names)}."));
        }

        bool oversubscribe = p.GetValue(_oversubscribe);
        int cores = Affinity.AllowedCores.Count;
        List<int> threads = ParseThreads(p.GetValue(_threads), cores);
        if (!oversubscribe && threads.Max() > cores)
        {
            throw new UsageException($"--threads: {threads.Max()} threads but this machine lets SpecVm use {cores} cores; pass --oversubscribe to run more threads than cores.");
        }

        if (threads.Max() + 1 > MachineOptions.MaxCpus)
        {
            throw new UsageException($"--threads: at most {MachineOptions.MaxCpus - 1} threads (got {threads.Max()}).");
        }

        double duration = p.GetValue(_duration);
        double warmup = p.GetValue(_warmup);
        int repeats = p.GetValue(_repeats);
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

        string outDir = p.GetValue(_out) ?? Path.Combine("results", DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture));
        return new ScaleSettings(workloads, strategies, threads, TimeSpan.FromSeconds(warmup), TimeSpan.FromSeconds(duration), repeats, outDir, oversubscribe, p.GetValue(_verify))
        {
            MappingMib = mapping,
            SliceMib = slice,
            TargetedShootdowns = p.GetValue(_targeted),
            DowngradeOnUnmap = !p.GetValue(_noDowngrade),
            WriterOpsPerSecond = writerRate,
            AllowDebug = p.GetValue(_allowDebug),
            DryRun = p.GetValue(_dryRun),
        };
    }

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

    /// <summary>munmap downgrades the mmap lock before zapping (Linux 4.20+).</summary>
    public bool DowngradeOnUnmap { get; init; } = true;

    /// <summary>database-load bytes per loader, MiB.</summary>
    public long SliceMib { get; init; } = DatabaseLoad.DefaultSliceBytes >> 20;

    /// <summary>database-load writer operations per second.</summary>
    public double WriterOpsPerSecond { get; init; } = DatabaseLoad.DefaultWriterOpsPerSecond;

    /// <summary>Measure even in a Debug build.</summary>
    public bool AllowDebug { get; init; }

    /// <summary>Print the plan and exit without measuring.</summary>
    public bool DryRun { get; init; }
}
