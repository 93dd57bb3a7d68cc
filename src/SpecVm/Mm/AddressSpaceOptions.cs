namespace SpecVm.Mm;

/// <summary>Tunables of an <see cref="AddressSpace"/>.</summary>
public sealed class AddressSpaceOptions
{
    /// <summary>
    /// Frames an unmap gathers before it must flush (Linux <c>mmu_gather</c> batches). When the batch fills in the
    /// middle of a PTE table, the flush happens <em>while holding that table's PTL</em>, as Linux's zap path can:
    /// the hazard the speculative path's PTL trylock exists for; the frames are freed after the PTL is dropped.
    /// Default 10,000 pages: Linux's <c>MAX_GATHER_BATCH_COUNT</c> is 10000 / <c>MAX_GATHER_BATCH</c> batch pages of
    /// <c>MAX_GATHER_BATCH</c> (~510) pointers each (include/asm-generic/tlb.h), about 10,000 pages per gather.
    /// </summary>
    public int ZapBatchPages { get; set; } = 10_000;

    /// <summary>Poison VMAs when they return to the slab and count reads of poisoned VMAs (see <see cref="VmaSlab.PoisonedReads"/>).</summary>
    public bool PoisonRetiredVmas { get; set; } = true;

    /// <summary>
    /// Targeted TLB shootdowns (RadixVM's idea; Linux tracks only the per-mm CPU mask): each PTE-table page records the
    /// CPUs that filled their TLB from it, and a shootdown that frees no page table interrupts only those CPUs of the
    /// range, instead of every awake CPU that has the address space loaded. Shootdowns that free page tables still
    /// interrupt every CPU in the mask (a lockless walker may be inside a table being freed). Default off (Linux's
    /// behaviour); it costs one atomic per CPU per PTE table on the TLB-miss path the first time.
    /// </summary>
    public bool TargetedShootdowns { get; set; }

    /// <summary>
    /// munmap downgrades the mmap lock to read once the VMAs are detached, and zaps, shoots down and frees page tables
    /// under the read lock (Linux since 4.20, commit dd2283f2605e "mm: mmap: zap pages with read mmap_sem in munmap";
    /// 6.x <c>vms_complete_munmap_vmas</c>), so faults in other VMAs go on meanwhile. False holds the write lock
    /// through all of it, as the 4.14 kernels of the 2017 speculative series did. Default true.
    /// </summary>
    public bool DowngradeOnUnmap { get; set; } = true;

    internal void Validate()
    {
        if (ZapBatchPages < 1 || ZapBatchPages > 1 << 20)
        {
            throw new ArgumentOutOfRangeException(nameof(ZapBatchPages), ZapBatchPages, "Zap batch must be 1..1048576 pages.");
        }
    }
}
