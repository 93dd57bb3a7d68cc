using SpecVm.Smp;

namespace SpecVm.Mm;

/// <summary>
/// The Linux version a run models: the settings of the model that differ between kernels (whether munmap downgrades
/// the mmap lock, the mmu_gather batch, …), as data, chosen per run and recorded in results. Presets:
/// <see cref="Linux414Spf"/> (the 4.14 kernels of the 2017 speculative page-fault series), <see cref="Linux66"/> and
/// <see cref="Linux615"/> (the default, the newest). Every value cites the kernel source it comes from; docs/design.md
/// §6 lists, step by step, what the model does and what still differs.
/// </summary>
/// <remarks>
/// A profile fills an <see cref="AddressSpaceOptions"/> (<see cref="CreateAddressSpaceOptions"/>) and a
/// <see cref="MachineOptions"/> (<see cref="ApplyTo(MachineOptions)"/>); the scaling harness does both for every run
/// (<c>ScalingOptions.KernelProfile</c>). Address-space options a caller gives explicitly take precedence over the
/// profile's. The fault strategies themselves are not versioned: the speculative strategy is the 2017 series under
/// every profile (it was never merged), and the per-VMA-lock strategy runs under the 4.14 profile with the scope of
/// 6.4, its first version (4.14 had no per-VMA locks; results say so).
/// </remarks>
public sealed class KernelProfile
{
    private KernelProfile(string name, string description)
    {
        Name = name;
        Description = description;
    }

    /// <summary>
    /// Linux 4.14 with the 2017 speculative page-fault series (Laurent Dufour's v1–v3, on 4.13/4.14): munmap holds the
    /// mmap lock for write through the zap, the shootdowns and the frees (the downgrade came in 4.20, commit
    /// dd2283f2605e); no per-VMA locks.
    /// </summary>
    public static KernelProfile Linux414Spf { get; } = new("4.14-spf", "Linux 4.14 with the 2017 speculative page-fault series")
    {
        DowngradeOnUnmap = false,
        PerVmaLocks = false,
        PerVmaLockScope = PerVmaLockScope.AnonymousOnly,
        FolioBatchSize = 14,
    };

    /// <summary>
    /// Linux 6.6 (LTS): munmap downgrades to read before zapping; per-VMA locks (merged in 6.4).
    /// </summary>
    public static KernelProfile Linux66 { get; } = new("6.6", "Linux 6.6 (LTS), per-VMA locks")
    {
        DowngradeOnUnmap = true,
        PerVmaLocks = true,
        PerVmaLockScope = PerVmaLockScope.FileRetry,
        FolioBatchSize = 15,
    };

    /// <summary>
    /// Linux 6.15: munmap downgrades (<c>vms_complete_munmap_vmas</c>); per-VMA locks with <c>vm_refcnt</c> on its own
    /// cache line. The default.
    /// </summary>
    public static KernelProfile Linux615 { get; } = new("6.15", "Linux 6.15, per-VMA locks with vm_refcnt")
    {
        DowngradeOnUnmap = true,
        PerVmaLocks = true,
        PerVmaLockScope = PerVmaLockScope.Full,
        FolioBatchSize = 31,
    };

    /// <summary>The profile runs use unless told otherwise: the newest, <see cref="Linux615"/>.</summary>
    public static KernelProfile Default => Linux615;

    /// <summary>Every preset, oldest first.</summary>
    public static IReadOnlyList<KernelProfile> All { get; } = [Linux414Spf, Linux66, Linux615];

    /// <summary>The presets' names, oldest first ("4.14-spf", "6.6", "6.15").</summary>
    public static IReadOnlyList<string> Names { get; } = [.. All.Select(p => p.Name)];

    /// <summary>The short name ("6.15"), as results record it.</summary>
    public string Name { get; }

    /// <summary>One line saying which kernel this is.</summary>
    public string Description { get; }

    /// <summary>
    /// munmap downgrades the mmap lock to read once the VMAs are detached (4.20+); see
    /// <see cref="AddressSpaceOptions.DowngradeOnUnmap"/>.
    /// </summary>
    public bool DowngradeOnUnmap { get; private init; }

    /// <summary>
    /// Pages an unmap gathers before it must flush: <c>MAX_GATHER_BATCH_COUNT</c> batches of <c>MAX_GATHER_BATCH</c>
    /// pointers, about 10,000 pages, the same in 4.14 and 6.x (include/asm-generic/tlb.h); see
    /// <see cref="AddressSpaceOptions.ZapBatchPages"/>.
    /// </summary>
    public int ZapBatchPages { get; private init; } = 10_000;

    /// <summary>Whether the kernel has per-VMA locks (6.4+). The per-VMA-lock strategy still runs without them, as 6.4's.</summary>
    public bool PerVmaLocks { get; private init; }

    /// <summary>
    /// Which faults the per-VMA lock handles (<see cref="AddressSpaceOptions.PerVmaLockScope"/>): 6.6 locks file VMAs and
    /// retries what needs the page cache (<see cref="PerVmaLockScope.FileRetry"/>); 6.15 handles file faults and
    /// checks the <c>anon_vma</c> where an anonymous page is allocated (<see cref="PerVmaLockScope.Full"/>, 6.10+);
    /// the 4.14 profile, which has no per-VMA locks, uses 6.4's (<see cref="PerVmaLockScope.AnonymousOnly"/>).
    /// </summary>
    public PerVmaLockScope PerVmaLockScope { get; private init; } = PerVmaLockScope.Full;

    /// <summary>
    /// Anonymous read faults map the shared zero page (<c>do_anonymous_page</c>, every kernel of the profiles); see
    /// <see cref="AddressSpaceOptions.UseZeroPage"/>.
    /// </summary>
    public bool UseZeroPage { get; private init; } = true;

    /// <summary>
    /// Pages per per-CPU LRU batch before the <c>lru_lock</c> is taken (<see cref="MachineOptions.FolioBatchSize"/>):
    /// <c>PAGEVEC_SIZE</c> 14 in 4.14 (15 from 4.15, when the pagevec lost its <c>cold</c> field), 15 in 6.6,
    /// <c>FOLIO_BATCH_SIZE</c> 31 since 6.9.
    /// </summary>
    public int FolioBatchSize { get; private init; } = 31;

    /// <summary>
    /// Frames per refill of a CPU's free list under <c>zone-&gt;lock</c> (<see cref="MachineOptions.PcpBatch"/>): 63 in
    /// every profile (mm/page_alloc.c <c>zone_batchsize</c>, unchanged in shape since 2.6).
    /// </summary>
    public int PcpBatch { get; private init; } = 63;

    /// <summary>
    /// Frames a CPU's free list may hold (<see cref="MachineOptions.PcpHigh"/>): 6 × batch = 378 in every profile, 4.14's
    /// rule. Since 5.14 Linux sizes it from the zone's low watermark over the node's CPUs (at least 4 × batch), which
    /// depends on the machine; the model keeps the static rule for 6.x too (a known difference, docs/design.md §6).
    /// </summary>
    public int PcpHigh { get; private init; } = 378;

    /// <summary>The preset called <paramref name="name"/> (case-insensitive), or null.</summary>
    /// <param name="name">A name from <see cref="Names"/>.</param>
    public static KernelProfile? TryGet(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return All.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Address-space options as this kernel behaves (targeted shootdowns off: no Linux has them).</summary>
    public AddressSpaceOptions CreateAddressSpaceOptions() => new()
    {
        DowngradeOnUnmap = DowngradeOnUnmap,
        ZapBatchPages = ZapBatchPages,
        PerVmaLockScope = PerVmaLockScope,
        UseZeroPage = UseZeroPage,
    };

    /// <summary>Sets the machine-wide settings this kernel decides on <paramref name="options"/>.</summary>
    /// <param name="options">The machine options to change.</param>
    /// <remarks>The memory cgroup depth is left as it is: it depends on the system, not the kernel version.</remarks>
    public void ApplyTo(MachineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.FolioBatchSize = FolioBatchSize;
        options.PcpBatch = PcpBatch;
        options.PcpHigh = PcpHigh;
    }

    /// <summary>Every setting of the profile by name, as results record them.</summary>
    public IReadOnlyDictionary<string, string> Settings() => new SortedDictionary<string, string>(StringComparer.Ordinal)
    {
        ["downgradeOnUnmap"] = DowngradeOnUnmap ? "true" : "false",
        ["zapBatchPages"] = ZapBatchPages.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["perVmaLocks"] = PerVmaLocks ? "true" : "false",
        ["perVmaLockScope"] = PerVmaLockScope.ToString(),
        ["useZeroPage"] = UseZeroPage ? "true" : "false",
        ["folioBatchSize"] = FolioBatchSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["pcpBatch"] = PcpBatch.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["pcpHigh"] = PcpHigh.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <inheritdoc/>
    public override string ToString() => Name;
}
