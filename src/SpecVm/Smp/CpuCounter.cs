namespace SpecVm.Smp;

/// <summary>
/// Every per-CPU event counter SpecVm keeps (Linux vmstat/perf-event style). Each CPU increments its own copy
/// without atomics; totals are sums over CPUs (<see cref="Machine.Counter(CpuCounter)"/>).
/// </summary>
public enum CpuCounter
{
    /// <summary>Accesses satisfied by the TLB.</summary>
    TlbHits,

    /// <summary>Accesses that missed the TLB.</summary>
    TlbMisses,

    /// <summary>Misses filled by a successful page walk (no fault).</summary>
    TlbFills,

    /// <summary>Flush IPIs sent by this CPU.</summary>
    IpisSent,

    /// <summary>Flush IPIs served by this CPU.</summary>
    IpisServed,

    /// <summary>Shootdowns initiated.</summary>
    Shootdowns,

    /// <summary>Targets skipped because they were lazy (asleep); they catch up through the TLB generation.</summary>
    LazyTargetsSkipped,

    /// <summary>Pages flushed one by one.</summary>
    PagesFlushed,

    /// <summary>Whole-TLB flushes.</summary>
    FullFlushes,

    /// <summary>Page faults taken (all strategies, all outcomes).</summary>
    Faults,

    /// <summary>Anonymous read faults resolved.</summary>
    FaultAnonRead,

    /// <summary>Anonymous write faults resolved.</summary>
    FaultAnonWrite,

    /// <summary>Private-file read faults resolved (page-cache page mapped read-only).</summary>
    FaultFileRead,

    /// <summary>Private-file write faults resolved (copied from the page cache).</summary>
    FaultFileWrite,

    /// <summary>Shared-file read faults resolved.</summary>
    FaultSharedRead,

    /// <summary>Shared-file write faults resolved (page-cache page dirtied).</summary>
    FaultSharedWrite,

    /// <summary>Write faults on a present read-only private page resolved by copy-on-write or reuse.</summary>
    FaultWriteProtect,

    /// <summary>Faults that ended in a segmentation fault (no VMA, or access not allowed).</summary>
    FaultSegv,

    /// <summary>Faults that found no free frame.</summary>
    FaultOom,

    /// <summary>Faults that found the work already done by another CPU (PTE already installed).</summary>
    FaultRaced,

    /// <summary>Faults handled on the classic path under the mmap lock (including fallbacks).</summary>
    MmapLockFaults,

    /// <summary>Speculative attempts.</summary>
    SpecAttempts,

    /// <summary>Speculative attempts that installed the page without the mmap lock.</summary>
    SpecSuccess,

    /// <summary>Speculative aborts: no VMA at the address (falls back; the classic path decides SIGSEGV).</summary>
    SpecAbortVmaNotFound,

    /// <summary>Speculative aborts: the VMA's sequence count was odd (a writer inside).</summary>
    SpecAbortSeqOdd,

    /// <summary>Speculative aborts: the VMA's sequence count changed, or the VMA was detached.</summary>
    SpecAbortSeqChanged,

    /// <summary>Speculative aborts: a VMA kind the speculative path does not handle (file-backed).</summary>
    SpecAbortUnsupported,

    /// <summary>Speculative aborts: a page-table level was missing (never allocated speculatively).</summary>
    SpecAbortNoPageTable,

    /// <summary>Speculative aborts: the PTL trylock failed.</summary>
    SpecAbortPtlBusy,

    /// <summary>Speculative aborts: the PTE changed between the walk and the lock.</summary>
    SpecAbortPteChanged,

    /// <summary>Speculative access errors returned as SIGSEGV directly (no fallback).</summary>
    SpecAccessError,

    /// <summary>Speculative attempts that fell back to the classic path.</summary>
    SpecFallbacks,

    /// <summary>Per-VMA lock faults that read-locked the VMA and completed (Linux <c>VMA_LOCK_SUCCESS</c>).</summary>
    VmaLockSuccess,

    /// <summary>
    /// Per-VMA lock attempts that gave up and fell back to the mmap lock (Linux <c>VMA_LOCK_ABORT</c>, counted by
    /// <c>lock_vma_under_rcu</c>): no VMA at the address, a VMA the per-VMA lock's scope does not cover (file-backed
    /// before 6.6; anonymous without an <c>anon_vma</c> before 6.10: <c>AddressSpaceOptions.PerVmaLockScope</c>), a VMA a
    /// writer has marked, or one whose range no longer holds the address.
    /// </summary>
    VmaLockAbort,

    /// <summary>
    /// Per-VMA lock faults that locked the VMA and then returned <c>VM_FAULT_RETRY</c> (Linux <c>VMA_LOCK_RETRY</c>): the
    /// scope sends them to the mmap lock (6.6's file faults that need <c>-&gt;fault</c>, copy-on-write or a shared-file
    /// write; <c>vmf_anon_prepare</c> without an <c>anon_vma</c>); they are retried there.
    /// </summary>
    VmaLockRetry,

    /// <summary>
    /// Per-VMA lock attempts that read-locked a VMA and then found it detached (replaced meanwhile): the lookup is retried
    /// (Linux <c>VMA_LOCK_MISS</c>, "the area was replaced with another one").
    /// </summary>
    VmaLockMiss,

    /// <summary>mmap lock read acquisitions made by this CPU.</summary>
    MmapReadAcquisitions,

    /// <summary>mmap lock write acquisitions made by this CPU.</summary>
    MmapWriteAcquisitions,

    /// <summary>Time this CPU waited for the mmap lock (read or write), in Stopwatch ticks.</summary>
    MmapWaitTicks,

    /// <summary>Time this CPU held the mmap lock for write, in Stopwatch ticks.</summary>
    MmapWriteHoldTicks,

    /// <summary>Pages zeroed for anonymous faults.</summary>
    PagesZeroed,

    /// <summary>Pages copied (copy-on-write, private file).</summary>
    PagesCopied,

    /// <summary>Times this CPU went lazy (slept) and later caught up with the TLB generation.</summary>
    LazyCatchUps,

    /// <summary>
    /// CPUs in the address space's CPU mask that a targeted shootdown did not interrupt, because no page-table page of
    /// the range had served them a translation (<c>AddressSpaceOptions.TargetedShootdowns</c>).
    /// </summary>
    TargetedIpisAvoided,

    /// <summary>
    /// Anonymous read faults resolved by mapping the shared zero page (no frame allocated or zeroed; Linux
    /// <c>do_anonymous_page</c>'s zero-page branch; <c>AddressSpaceOptions.UseZeroPage</c>). Each is counted as
    /// <see cref="FaultAnonRead"/> too.
    /// </summary>
    FaultZeroPage,

    /// <summary>
    /// Wait histogram (<see cref="WaitHistogram"/>): mmap lock read waits of under 1 µs. Each <see cref="WaitKind"/> has
    /// six decade buckets then its total time, in this order; only a wait that waited is counted (the uncontended fast
    /// path reads no clock). <see cref="WaitHistogram.Counter"/> finds a bucket's counter.
    /// </summary>
    MmapReadWaitUnder1us,

    /// <summary>Wait histogram: mmap lock read waits of 1 µs to 10 µs.</summary>
    MmapReadWait1us,

    /// <summary>Wait histogram: mmap lock read waits of 10 µs to 100 µs.</summary>
    MmapReadWait10us,

    /// <summary>Wait histogram: mmap lock read waits of 100 µs to 1 ms.</summary>
    MmapReadWait100us,

    /// <summary>Wait histogram: mmap lock read waits of 1 ms to 10 ms.</summary>
    MmapReadWait1ms,

    /// <summary>Wait histogram: mmap lock read waits of 10 ms or more.</summary>
    MmapReadWait10ms,

    /// <summary>Wait histogram: total time of the mmap lock read waits, in Stopwatch ticks (virtual ticks in virtual time).</summary>
    MmapReadWaitTicks,

    /// <summary>Wait histogram: mmap lock write waits of under 1 µs.</summary>
    MmapWriteWaitUnder1us,

    /// <summary>Wait histogram: mmap lock write waits of 1 µs to 10 µs.</summary>
    MmapWriteWait1us,

    /// <summary>Wait histogram: mmap lock write waits of 10 µs to 100 µs.</summary>
    MmapWriteWait10us,

    /// <summary>Wait histogram: mmap lock write waits of 100 µs to 1 ms.</summary>
    MmapWriteWait100us,

    /// <summary>Wait histogram: mmap lock write waits of 1 ms to 10 ms.</summary>
    MmapWriteWait1ms,

    /// <summary>Wait histogram: mmap lock write waits of 10 ms or more.</summary>
    MmapWriteWait10ms,

    /// <summary>Wait histogram: total time of the mmap lock write waits, in Stopwatch ticks (virtual ticks in virtual time).</summary>
    MmapWriteWaitTicks,

    /// <summary>Wait histogram: page-table lock spin waits of under 1 µs.</summary>
    PtlWaitUnder1us,

    /// <summary>Wait histogram: page-table lock spin waits of 1 µs to 10 µs.</summary>
    PtlWait1us,

    /// <summary>Wait histogram: page-table lock spin waits of 10 µs to 100 µs.</summary>
    PtlWait10us,

    /// <summary>Wait histogram: page-table lock spin waits of 100 µs to 1 ms.</summary>
    PtlWait100us,

    /// <summary>Wait histogram: page-table lock spin waits of 1 ms to 10 ms.</summary>
    PtlWait1ms,

    /// <summary>Wait histogram: page-table lock spin waits of 10 ms or more.</summary>
    PtlWait10ms,

    /// <summary>Wait histogram: total time of the page-table lock spin waits, in Stopwatch ticks (virtual ticks in virtual time).</summary>
    PtlWaitTicks,

    /// <summary>Wait histogram: TLB shootdown acknowledgement waits of under 1 µs.</summary>
    ShootdownAckWaitUnder1us,

    /// <summary>Wait histogram: TLB shootdown acknowledgement waits of 1 µs to 10 µs.</summary>
    ShootdownAckWait1us,

    /// <summary>Wait histogram: TLB shootdown acknowledgement waits of 10 µs to 100 µs.</summary>
    ShootdownAckWait10us,

    /// <summary>Wait histogram: TLB shootdown acknowledgement waits of 100 µs to 1 ms.</summary>
    ShootdownAckWait100us,

    /// <summary>Wait histogram: TLB shootdown acknowledgement waits of 1 ms to 10 ms.</summary>
    ShootdownAckWait1ms,

    /// <summary>Wait histogram: TLB shootdown acknowledgement waits of 10 ms or more.</summary>
    ShootdownAckWait10ms,

    /// <summary>Wait histogram: total time of the TLB shootdown acknowledgement waits, in Stopwatch ticks (virtual ticks in virtual time).</summary>
    ShootdownAckWaitTicks,

    /// <summary>
    /// Zone-lock acquisitions (Linux <c>zone->lock</c>, taken once per per-CPU list refill or drain of
    /// <see cref="MachineOptions.PcpBatch"/> frames). This counter and the next two are one lock's statistics, in this
    /// order: acquisitions, contended acquisitions, ticks spun.
    /// </summary>
    ZoneLockAcquisitions,

    /// <summary>Zone-lock acquisitions that had to spin.</summary>
    ZoneLockContentions,

    /// <summary>Time spent spinning for the zone lock, in Stopwatch ticks (virtual ticks in virtual time).</summary>
    ZoneLockWaitTicks,

    /// <summary>
    /// LRU-lock acquisitions (Linux <c>lruvec->lru_lock</c>, taken once per full folio batch added to the LRU and once per
    /// batch of freed pages taken off it; <see cref="MachineOptions.FolioBatchSize"/>).
    /// </summary>
    LruLockAcquisitions,

    /// <summary>LRU-lock acquisitions that had to spin.</summary>
    LruLockContentions,

    /// <summary>Time spent spinning for the LRU lock, in Stopwatch ticks (virtual ticks in virtual time).</summary>
    LruLockWaitTicks,

    /// <summary>
    /// Walks of the memory cgroup's page-counter hierarchy (one atomic per level, <see cref="MachineOptions.MemcgDepth"/>):
    /// a stock refill of 64 pages, an uncharge of a batch of freed pages, or a stock drain.
    /// </summary>
    MemcgCounterWalks,

    /// <summary>Memory cgroup charges refused by the cgroup's limit (the fault reports out of memory).</summary>
    MemcgChargeFailures,

    /// <summary>Time spent in the memory cgroup's counter walks, in Stopwatch ticks (virtual ticks in virtual time).</summary>
    MemcgWalkTicks,

    /// <summary>
    /// Anonymous faults that mapped a 2 MiB transparent huge page with one PMD entry (Linux vmstat <c>thp_fault_alloc</c>;
    /// <c>AddressSpaceOptions.TransparentHugePages</c>).
    /// </summary>
    ThpFaultAlloc,

    /// <summary>
    /// Huge-page faults that found no huge page to allocate (the reserve was empty, or the memory cgroup refused 512
    /// pages) and mapped a 4 KiB page instead (Linux vmstat <c>thp_fault_fallback</c>).
    /// </summary>
    ThpFaultFallback,

    /// <summary>
    /// Huge PMD entries split into a PTE table of 512 entries (Linux vmstat <c>thp_split_pmd</c>): by an munmap,
    /// <c>MADV_DONTNEED</c> or mprotect that covers part of a huge page.
    /// </summary>
    ThpSplitPmd,

    /// <summary>
    /// Speculative aborts (Dufour's series): the PMD maps a huge page, or is empty in a VMA where the classic path would
    /// map one; the series never handles THP speculatively (<c>pmd_trans_huge</c> and <c>pmd_none</c> go to
    /// <c>out_walk</c>).
    /// </summary>
    SpecAbortHugePage,

    /// <summary>Number of counters (not a counter).</summary>
    Count,
}
