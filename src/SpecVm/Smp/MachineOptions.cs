using SpecVm.Memory;

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

    /// <summary>
    /// Pages per per-CPU LRU folio batch: a CPU takes the LRU lock once per this many new anonymous pages, and once per
    /// this many freed ones (Linux mm/swap.c <c>folio_add_lru</c> / <c>folio_batch_move_lru</c>; include/linux/pagevec.h
    /// <c>PAGEVEC_SIZE</c> 14 in 4.14, 15 until 6.8, <c>FOLIO_BATCH_SIZE</c> 31 since 6.9). Default 31; 0 turns the LRU
    /// off (no batches, no lock: the model before issue 17).
    /// </summary>
    public int FolioBatchSize { get; set; } = LruVec.DefaultFolioBatchSize;

    /// <summary>
    /// Frames a CPU's free list takes from, or gives back to, the global pool under the zone lock at a time (Linux
    /// <c>pcp->batch</c>, mm/page_alloc.c <c>zone_batchsize</c>: 63 for any zone over 256 MiB). Default 63; at least 1.
    /// </summary>
    public int PcpBatch { get; set; } = FrameAllocator.DefaultPcpBatch;

    /// <summary>
    /// Frames a CPU's free list may hold before it gives <see cref="PcpBatch"/> back (Linux <c>pcp->high</c>). Default 378,
    /// 6 × 63: mm/page_alloc.c's rule before 5.14 (<c>new_high = 6 * new_batch</c>); since 5.14 <c>zone_highsize</c>
    /// gives the zone's low watermark split over the node's CPUs, at least 4 × batch, a few hundred pages on a server.
    /// At least <see cref="PcpBatch"/>.
    /// </summary>
    public int PcpHigh { get; set; } = FrameAllocator.DefaultPcpHigh;

    /// <summary>
    /// Levels of memory-cgroup page counters a charge walks (Linux <c>page_counter_try_charge</c>: one atomic per
    /// ancestor, per refill of the per-CPU stock of 64 pages, <c>MEMCG_CHARGE_BATCH</c>, and per batch of freed pages).
    /// Default 0, off: whether a process is charged, and how deep, depends on the system (under systemd a login session's
    /// process is 2–3 levels deep; the root cgroup is not charged); set the depth of the system compared with. At most 16.
    /// </summary>
    public int MemcgDepth { get; set; }

    /// <summary>
    /// 2 MiB blocks of physical memory set aside, when the machine starts, for transparent huge pages
    /// (<c>AddressSpaceOptions.TransparentHugePages</c>): the highest aligned blocks of memory, out of the 4 KiB
    /// allocator's reach. A huge fault takes a block from this reserve and falls back to 4 KiB pages when it is empty
    /// (Linux allocates an order-9 page from the buddy lists and falls back when that fails, counting
    /// <c>thp_fault_fallback</c>). Default 0: no huge pages, every THP fault falls back. At most every whole 2 MiB block
    /// of <see cref="MemoryBytes"/> but the first.
    /// </summary>
    public int HugePageReserve { get; set; }

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

        if (FolioBatchSize < 0 || FolioBatchSize > LruVec.MaxFolioBatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(FolioBatchSize), FolioBatchSize, $"The folio batch size must be in 0..{LruVec.MaxFolioBatchSize} (0: no LRU).");
        }

        if (PcpBatch < 1 || PcpBatch > FrameAllocator.MaxPcp)
        {
            throw new ArgumentOutOfRangeException(nameof(PcpBatch), PcpBatch, $"The per-CPU list batch must be in 1..{FrameAllocator.MaxPcp}.");
        }

        if (PcpHigh < PcpBatch || PcpHigh > FrameAllocator.MaxPcp)
        {
            throw new ArgumentOutOfRangeException(nameof(PcpHigh), PcpHigh, $"The per-CPU list high mark must be in {PcpBatch} (PcpBatch)..{FrameAllocator.MaxPcp}.");
        }

        if (MemcgDepth < 0 || MemcgDepth > MemCgroup.MaxDepth)
        {
            throw new ArgumentOutOfRangeException(nameof(MemcgDepth), MemcgDepth, $"The memory cgroup depth must be in 0..{MemCgroup.MaxDepth} (0: off).");
        }

        long frames = MemoryBytes / PhysicalMemory.PageSize;
        if (HugePageReserve < 0 || HugePageReserve > FrameAllocator.MaxHugeBlocks(frames))
        {
            throw new ArgumentOutOfRangeException(nameof(HugePageReserve), HugePageReserve, $"The huge-page reserve must be in 0..{FrameAllocator.MaxHugeBlocks(frames)} blocks of 2 MiB for {MemoryBytes >> 20} MiB of memory.");
        }

        if (WatchdogTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(WatchdogTimeout), WatchdogTimeout, "The watchdog timeout must be positive.");
        }
    }
}
