namespace SpecVm.Workloads;

/// <summary>The built-in workloads by name, for command lines and configuration files.</summary>
public static class WorkloadCatalog
{
    /// <summary>
    /// What a workload's name ends with in <see cref="WorkloadMode.Processes"/> (page-fault1-processes): will-it-scale
    /// builds each test twice, <c>_threads</c> and <c>_processes</c>, and the threads name is the plain one.
    /// </summary>
    public const string ProcessesSuffix = "-processes";

    /// <summary>Every built-in workload name.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        "page-fault1", "page-fault2", "page-fault3", "page-fault4", "page-fault-zero",
        "mmap1", "mmap2", "brk1", "madvise-dontneed1", "tlb-flush1", "map-and-install",
        "page-fault1-processes", "page-fault2-processes", "page-fault3-processes",
        "database-load", "database-load-interleaved", "database-load-nowriter", "ebizzy",
        "native-page-fault1", "native-page-fault2", "native-page-fault3",
        "native-database-load", "native-database-load-nowriter",
    ];

    /// <summary>The name of test <paramref name="test"/> in <paramref name="mode"/>: <paramref name="test"/>, plus <see cref="ProcessesSuffix"/> for processes.</summary>
    internal static string ModeName(string test, WorkloadMode mode) => mode == WorkloadMode.Processes ? test + ProcessesSuffix : test;

    /// <summary>Creates the workload called <paramref name="name"/>, or returns null for an unknown name.</summary>
    /// <param name="name">A name from <see cref="Names"/> (case-insensitive).</param>
    /// <param name="mappingBytes">
    /// The will-it-scale tests' mapping size (128 MiB there): page_fault and tlb_flush1 bytes per round, mmap bytes per
    /// operation, madvise-dontneed1 bytes per task (a multiple of 1 MiB).
    /// </param>
    /// <param name="sliceBytes">DatabaseLoad bytes per loader.</param>
    /// <param name="writerOpsPerSecond">DatabaseLoad writer rate (ignored by the "-nowriter" variants).</param>
    public static Workload? TryCreate(
        string name,
        long mappingBytes = PageFaultWorkload.DefaultMappingBytes,
        long sliceBytes = DatabaseLoad.DefaultSliceBytes,
        double writerOpsPerSecond = DatabaseLoad.DefaultWriterOpsPerSecond)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "page-fault1" => new PageFault1(mappingBytes),
            "page-fault2" => new PageFault2(mappingBytes),
            "page-fault3" => new PageFault3(mappingBytes),
            "page-fault4" => new PageFault4(mappingBytes),
            "page-fault-zero" => new PageFaultZero(mappingBytes),
            "mmap1" => new Mmap1(mappingBytes),
            "mmap2" => new Mmap2(mappingBytes),
            "brk1" => new Brk1(),
            "map-and-install" => new MapAndInstall(),
            "madvise-dontneed1" => new MadviseDontNeed1(mappingBytes),
            "tlb-flush1" => new TlbFlush1(mappingBytes),
            "page-fault1-processes" => new PageFault1(mappingBytes, WorkloadMode.Processes),
            "page-fault2-processes" => new PageFault2(mappingBytes, WorkloadMode.Processes),
            "page-fault3-processes" => new PageFault3(mappingBytes, WorkloadMode.Processes),
            "database-load" => new DatabaseLoad(sliceBytes, writerOpsPerSecond),
            "database-load-interleaved" => new DatabaseLoad(sliceBytes, writerOpsPerSecond, interleaveWriter: true),
            "database-load-nowriter" => new DatabaseLoad(sliceBytes, 0),
            "ebizzy" => new Ebizzy(),
            "native-page-fault1" => new NativePageFault(1, mappingBytes),
            "native-page-fault2" => new NativePageFault(2, mappingBytes),
            "native-page-fault3" => new NativePageFault(3, mappingBytes),
            "native-database-load" => new NativeDatabaseLoad(sliceBytes, writerOpsPerSecond),
            "native-database-load-nowriter" => new NativeDatabaseLoad(sliceBytes, 0),
            _ => null,
        };
    }
}
