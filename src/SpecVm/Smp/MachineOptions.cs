namespace SpecVm.Smp;

/// <summary>How to build a <see cref="Machine"/>. Every property has a sensible default.</summary>
public sealed class MachineOptions
{
    /// <summary>The most CPUs a machine may have (one bit each in the IPI and CPU masks).</summary>
    public const int MaxCpus = 64;

    /// <summary>Default physical memory: 4 GiB, comfortable for the default workloads on a 24 GiB host (the OS commits it lazily).</summary>
    public const long DefaultMemoryBytes = 4L << 30;

    /// <summary>CPUs to create; default: one per core this process may use.</summary>
    public int CpuCount { get; set; } = Math.Min(Affinity.AllowedCores.Count, MaxCpus);

    /// <summary>Physical memory in bytes (rounded down to whole 4 KiB frames).</summary>
    public long MemoryBytes { get; set; } = DefaultMemoryBytes;

    /// <summary>TLB entries per CPU (power of two; QEMU's default is 256).</summary>
    public int TlbEntries { get; set; } = 256;

    /// <summary>Pin CPU i to the i-th allowed core (round robin when there are more CPUs than cores).</summary>
    public bool Pin { get; set; } = true;

    /// <summary>Allow more CPUs than cores (time-shared, like an over-committed VM: spinning then wastes time slices).</summary>
    public bool AllowOversubscription { get; set; } = true;

    /// <summary>How long a CPU may spin with interrupts disabled before the hard-lockup watchdog fires.</summary>
    public TimeSpan WatchdogTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Poison VMAs when they return to the slab, and count reads of poisoned VMAs (a debugging aid).</summary>
    public bool PoisonRetiredVmas { get; set; }

    internal void Validate()
    {
        if (CpuCount < 1 || CpuCount > MaxCpus)
        {
            throw new ArgumentOutOfRangeException(nameof(CpuCount), CpuCount, $"CPU count must be in 1..{MaxCpus}.");
        }

        if (!AllowOversubscription && CpuCount > Affinity.AllowedCores.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(CpuCount), CpuCount, $"{CpuCount} CPUs but only {Affinity.AllowedCores.Count} cores and oversubscription is not allowed.");
        }

        if (MemoryBytes < 16 * 4096L || MemoryBytes / 4096 > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(MemoryBytes), MemoryBytes, "Memory must be between 64 KiB and 8 TiB.");
        }

        // Checked here, not only in Tlb's constructor: that runs after the machine has allocated physical memory,
        // which a throw from there would leak (and its parameter name would not be the option's).
        if (TlbEntries < 16 || TlbEntries > (1 << 20) || (TlbEntries & (TlbEntries - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TlbEntries), TlbEntries, "TLB size must be a power of two from 16 to 1048576.");
        }

        if (WatchdogTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(WatchdogTimeout), WatchdogTimeout, "The watchdog timeout must be positive.");
        }
    }
}
