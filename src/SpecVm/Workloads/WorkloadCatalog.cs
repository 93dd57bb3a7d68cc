namespace SpecVm.Workloads;

/// <summary>The built-in workloads by name, for command lines and configuration files.</summary>
public static class WorkloadCatalog
{
    /// <summary>Every built-in workload name.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        "page-fault1", "page-fault2", "page-fault3",
        "page-fault1-processes", "page-fault2-processes", "page-fault3-processes",
        "database-load", "database-load-interleaved", "database-load-nowriter", "ebizzy",
        "native-page-fault1", "native-page-fault2", "native-page-fault3",
        "native-database-load", "native-database-load-nowriter",
    ];

    /// <summary>Creates the workload called <paramref name="name"/>, or returns null for an unknown name.</summary>
    /// <param name="name">A name from <see cref="Names"/> (case-insensitive).</param>
    /// <param name="mappingBytes">page_fault mapping size per round (will-it-scale: 128 MiB).</param>
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
