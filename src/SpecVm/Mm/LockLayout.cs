namespace SpecVm.Mm;

/// <summary>
/// Where an address space puts the hot words of its mm-wide locks (Linux: the fields of <c>mm_struct</c> around
/// <c>mmap_lock</c>): the mmap lock's count and the mm-wide page-table lock (<c>mm-&gt;page_table_lock</c>).
/// </summary>
/// <remarks>
/// <para>
/// Linux declares <c>page_table_lock</c> right before <c>mmap_lock</c> in <c>mm_struct</c>, and which of its fields
/// share a cache line depends on the configuration: a field added before them can pull <c>page_table_lock</c> onto the
/// line of <c>mmap_lock</c>'s count. Then every CPU that takes one lock invalidates the line under every CPU that spins
/// on, or takes, the other, though no data is shared: false sharing (issue #16 cites an LKP report of a will-it-scale
/// mmap2 regression traced to these two locks landing on one line). This switch lets the model show it: everything else
/// about the address space is the same in both layouts, and both reach the two words through pointers fixed at
/// construction, so the default pays nothing for the choice.
/// </para>
/// <para>
/// The model takes <c>page_table_lock</c> where Linux does for the levels above the PTEs: to install a page-table page
/// (<c>__pud_alloc</c> and <c>__pmd_alloc</c> take it; <c>pmd_install</c> takes the PMD's lock, which is this one where
/// split PMD locks are off, and in the model). A workload shows the false sharing when some CPUs take the mmap lock while
/// others install page tables; one that installs a table every 512 faults (page_fault1) barely touches the lock, and
/// mmap1/mmap2, which fault nothing in, never do.
/// </para>
/// </remarks>
public enum LockLayout
{
    /// <summary>
    /// Each hot word alone on its own line (<see cref="Sync.CacheLine.Size"/> bytes, an adjacent-line prefetch pair):
    /// the default, as SpecVm laid them out before this switch.
    /// </summary>
    Padded,

    /// <summary>
    /// The page-table lock 8 bytes after the mmap lock's count, on one 64-byte cache line: the false sharing to study.
    /// </summary>
    SharedLine,
}
