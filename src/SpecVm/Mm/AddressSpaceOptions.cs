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

    /// <summary>
    /// Anonymous read faults map the machine's shared zero page read-only (<see cref="Smp.Machine.ZeroPfn"/>) instead of
    /// allocating and zeroing a frame; the first write to such a page then allocates a zeroed frame (Linux
    /// <c>do_anonymous_page</c>: <c>pte_mkspecial(pfn_pte(my_zero_pfn(...)))</c> on a read fault, and
    /// <c>wp_page_copy</c> with the zero pfn on the write that follows). Default true, as Linux (unless
    /// <c>mm_forbids_zeropage</c>); false allocates on every anonymous fault, as SpecVm did before.
    /// </summary>
    public bool UseZeroPage { get; set; } = true;

    /// <summary>
    /// Which faults the per-VMA-lock strategy (<c>PerVmaLockStrategy</c>) handles under the VMA lock, by Linux version (see
    /// <see cref="Mm.PerVmaLockScope"/>). Default <see cref="PerVmaLockScope.Full"/>, the newest kernels' behaviour
    /// (6.10 and later, 6.15 included).
    /// </summary>
    public PerVmaLockScope PerVmaLockScope { get; set; } = PerVmaLockScope.Full;

    /// <summary>
    /// Where the mmap lock's count and the mm-wide page-table lock (<c>mm-&gt;page_table_lock</c>) live: each alone on its
    /// line (<see cref="LockLayout.Padded"/>, the default) or both on one 64-byte line (<see cref="LockLayout.SharedLine"/>),
    /// to show the false sharing of a <c>mm_struct</c> layout that puts them together (see <see cref="Mm.LockLayout"/>).
    /// </summary>
    public LockLayout LockLayout { get; set; } = LockLayout.Padded;

    /// <summary>
    /// Transparent huge pages for anonymous memory (Linux <c>/sys/kernel/mm/transparent_hugepage/enabled</c>): with
    /// <see cref="TransparentHugePageMode.Always"/>, a fault in a private anonymous VMA that covers the whole 2 MiB-aligned
    /// range around the address, with no page table there yet, maps a 2 MiB page with one PMD entry
    /// (<c>do_huge_pmd_anonymous_page</c>), taken from the machine's reserve (<c>MachineOptions.HugePageReserve</c>).
    /// Default <see cref="TransparentHugePageMode.Never"/>: 4 KiB pages only, the model as it was.
    /// </summary>
    public TransparentHugePageMode TransparentHugePages { get; set; } = TransparentHugePageMode.Never;

    internal void Validate()
    {
        if (!Enum.IsDefined(TransparentHugePages))
        {
            throw new ArgumentOutOfRangeException(nameof(TransparentHugePages), TransparentHugePages, "Not a TransparentHugePageMode value.");
        }

        if (!Enum.IsDefined(LockLayout))
        {
            throw new ArgumentOutOfRangeException(nameof(LockLayout), LockLayout, "Not a LockLayout value.");
        }

        if (!Enum.IsDefined(PerVmaLockScope))
        {
            throw new ArgumentOutOfRangeException(nameof(PerVmaLockScope), PerVmaLockScope, "Not a PerVmaLockScope value.");
        }

        if (ZapBatchPages < 1 || ZapBatchPages > 1 << 20)
        {
            throw new ArgumentOutOfRangeException(nameof(ZapBatchPages), ZapBatchPages, "Zap batch must be 1..1048576 pages.");
        }
    }
}

/// <summary>
/// Which page faults the per-VMA lock handles without the mmap lock, as Linux widened it release by release
/// (<c>lock_vma_under_rcu</c> in mm/memory.c, later mm/mmap_lock.c). A fault outside the scope falls back to the mmap
/// lock, counted the way Linux counts it: refused by <c>lock_vma_under_rcu</c> (<see cref="Smp.CpuCounter.VmaLockAbort"/>),
/// or locked and then given up with <c>VM_FAULT_RETRY</c> (<see cref="Smp.CpuCounter.VmaLockRetry"/>).
/// </summary>
public enum PerVmaLockScope
{
    /// <summary>
    /// Linux 6.4–6.5: anonymous VMAs only, and only once they have an <c>anon_vma</c>. <c>lock_vma_under_rcu</c> refuses
    /// (abort) a file-backed VMA (<c>!vma_is_anonymous</c>) and an anonymous VMA whose <c>anon_vma</c> is not yet set
    /// (its allocation, <c>find_mergeable_anon_vma</c>, looks at unlocked neighbours).
    /// </summary>
    AnonymousOnly,

    /// <summary>
    /// Linux 6.6: file-backed VMAs are locked too ("mm: allow per-VMA locks on file-backed VMAs"), but only the
    /// fault-around of pages already in the page cache runs under the VMA lock (<c>do_read_fault</c> after
    /// <c>do_fault_around</c>); a read that must call <c>-&gt;fault</c> (page not cached), a copy-on-write fault
    /// (<c>do_cow_fault</c>), a shared-file write (<c>do_shared_fault</c>) and a write to a present read-only page of a
    /// shared file (<c>do_wp_page</c>) return <c>VM_FAULT_RETRY</c> (retry). Anonymous VMAs without an <c>anon_vma</c>
    /// are still refused by <c>lock_vma_under_rcu</c> (abort), and a copy-on-write copy needs one (retry).
    /// </summary>
    FileRetry,

    /// <summary>
    /// Linux 6.7–6.9 ("Handle more faults under the VMA lock"): file faults run under the VMA lock
    /// (<c>vmf_can_call_fault</c> passes for files with <c>map_pages</c>, as every page-cache file has); copy-on-write
    /// needs an <c>anon_vma</c> (<c>vmf_anon_prepare</c>: retry without one). <c>lock_vma_under_rcu</c> still refuses
    /// an anonymous VMA without an <c>anon_vma</c> (abort).
    /// </summary>
    FileFaults,

    /// <summary>
    /// Linux 6.10 and later ("mm: delay the check for a NULL anon_vma"): <c>lock_vma_under_rcu</c> no longer looks at
    /// the <c>anon_vma</c>; a fault that must allocate an anonymous page or copy one (<c>do_anonymous_page</c> writes,
    /// <c>do_cow_fault</c>, <c>wp_page_copy</c>) in a VMA without one returns <c>VM_FAULT_RETRY</c> from
    /// <c>vmf_anon_prepare</c> (retry), and the mmap lock path allocates it. A zero-page read fault needs none.
    /// </summary>
    Full,
}

/// <summary>When anonymous faults map 2 MiB transparent huge pages (Linux's <c>transparent_hugepage/enabled</c> modes).</summary>
public enum TransparentHugePageMode
{
    /// <summary>Never: every page is 4 KiB (Linux <c>never</c>).</summary>
    Never = 0,

    /// <summary>
    /// Every eligible anonymous fault tries a huge page (Linux <c>always</c>): a private anonymous VMA covering the whole
    /// aligned 2 MiB, an empty PMD, and a write (or a read with <see cref="AddressSpaceOptions.UseZeroPage"/> off; with it
    /// on, a read maps the 4 KiB zero page: the model has no huge zero page).
    /// </summary>
    Always = 1,
}
