using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Memory;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Mm;

/// <summary>
/// An address space (Linux <c>mm_struct</c>): the mmap lock, the VMA index, the page table, the TLB context (CPU mask
/// and TLB generation) and the per-VMA-lock sequence. Every operation runs on a given <see cref="Cpu"/>, from that
/// CPU's thread (inside <see cref="Machine.Run(int, Action{Cpu})"/>).
/// </summary>
/// <remarks>
/// <para>
/// <see cref="Map"/>, <see cref="Unmap"/> and <see cref="Protect"/> take the mmap lock for write; they bump the sequence
/// count of every VMA they touch before changing anything, write-lock it for per-VMA-lock readers, replace it by new
/// VMAs, zap or change PTEs under the PTL, shoot down the TLBs, and only then free frames and page tables. Retired
/// VMAs return to the slab after an SRCU grace period. <see cref="DontNeed"/> zaps pages under the mmap lock for read.
/// </para>
/// <para>
/// Reads and writes go through the MMU: TLB → lockless walk → page fault (the <see cref="FaultStrategy"/>) → retry.
/// A bad access returns <see cref="AccessResult.SegmentationFault"/>; it never crashes the CPU.
/// </para>
/// </remarks>
public sealed unsafe partial class AddressSpace : IDisposable
{
    /// <summary>Where top-down placement of mappings starts (below the x86-64 user stack region).</summary>
    public const ulong MmapBase = 0x7f00_0000_0000;

    /// <summary>The lowest mappable address (Linux <c>mmap_min_addr</c> default, 64 KiB).</summary>
    public const ulong MinAddress = 0x1_0000;

    private const ulong PageMask = PhysicalMemory.PageSize - 1;

    private readonly Machine _machine;
    private readonly PhysicalMemory _memory;
    private readonly MmLockLines _lockLines;
    private readonly RwSemaphore _mmapLock;
    /// <summary>What the access path compares a CPU's loaded context with once this address space is disposed.</summary>
    private static readonly TlbContext DisposedContext = new();

    private readonly TlbContext _tlb = new();
    private readonly PageTable _pageTable;
    private readonly VmaIndex _index = new();
    private readonly VmaSlab _slab;
    private readonly AddressSpaceOptions _options;
    private readonly bool _targeted;

    private readonly bool _useZeroPage;
    private readonly bool _thp;
    private readonly PerVmaLockScope _vmaLockScope;
    private readonly long[]?[] _gathers;
    private readonly List<Vma>?[] _scratch;
    private FaultStrategy _strategy;

    /// <summary>
    /// The context the access path compares a CPU's loaded context with: <see cref="_tlb"/> while alive, a context no
    /// CPU loads once disposed, so that every access (a TLB hit included) takes the slow path, which refuses it.
    /// </summary>
    private TlbContext _accessContext;
    private PaddedInt _lockSeq;
    private ulong _mmapHint = MmapBase;
    private long _writeStart;
    private int _disposed;

    /// <summary>Creates an empty address space that handles faults with <paramref name="strategy"/>.</summary>
    /// <param name="machine">The machine.</param>
    /// <param name="strategy">The page-fault strategy.</param>
    /// <param name="options">Tunables; null for defaults.</param>
    public AddressSpace(Machine machine, FaultStrategy strategy, AddressSpaceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        ObjectDisposedException.ThrowIf(machine.IsDisposed, machine);
        _options = options ?? new AddressSpaceOptions();
        _options.Validate();
        _targeted = _options.TargetedShootdowns;
        _useZeroPage = _options.UseZeroPage;
        _thp = _options.TransparentHugePages == TransparentHugePageMode.Always;
        _vmaLockScope = _options.PerVmaLockScope;
        _accessContext = _tlb;
        _machine = machine;
        _memory = machine.Memory;
        _strategy = strategy;
        _lockLines = new MmLockLines(_options.LockLayout);
        _mmapLock = new RwSemaphore(_lockLines.MmapCount, _lockLines.Storage);
        _pageTable = new PageTable(machine.Frames, -1, _lockLines.PageTableLock, _lockLines.Storage);
        _slab = new VmaSlab(machine.Srcu, _options.PoisonRetiredVmas || machine.Options.PoisonRetiredVmas);
        _gathers = new long[]?[machine.CpuCount];
        _scratch = new List<Vma>?[machine.CpuCount];
        machine.AddLabelledLines(_lockLines); // The simulator names the two lock lines (it keys native lines by address).
    }

    /// <summary>The machine.</summary>
    public Machine Machine => _machine;

    /// <summary>The page-fault strategy.</summary>
    public FaultStrategy Strategy => _strategy;

    /// <summary>The mmap lock (Linux <c>mmap_lock</c>, once <c>mmap_sem</c>).</summary>
    internal RwSemaphore MmapLock => _mmapLock;

    /// <summary>The TLB context: id, generation and CPU mask.</summary>
    internal TlbContext TlbContext => _tlb;

    /// <summary>The page table.</summary>
    internal PageTable PageTable => _pageTable;

    /// <summary>The VMAs.</summary>
    public VmaIndex Vmas => _index;

    /// <summary>The VMA slab (grace-period reuse, poisoning, counters).</summary>
    internal VmaSlab Slab => _slab;

    /// <summary>The options.</summary>
    public AddressSpaceOptions Options => _options;

    /// <summary>Planted bug for tests: targeted shootdowns interrupt no CPU at all.</summary>
    internal bool PlantTargetNoCpus { get; set; }

    /// <summary>Planted bug for tests: Unmap frees detached page tables before its shootdown.</summary>
    internal bool PlantFreeTablesBeforeShootdown { get; set; }

    /// <summary>The lock block: where the mmap lock's count and the mm-wide page-table lock live (<see cref="AddressSpaceOptions.LockLayout"/>).</summary>
    internal MmLockLines LockLines => _lockLines;

    /// <summary>The per-VMA-lock sequence (Linux <c>mm_lock_seq</c>), bumped when the mmap write lock is released.</summary>
    internal ref int LockSeq => ref _lockSeq.Value;

    /// <summary><see cref="AddressSpaceOptions.UseZeroPage"/> as fixed at construction (read on every anonymous read fault).</summary>
    internal bool UseZeroPage => _useZeroPage;

    /// <summary>True when <see cref="AddressSpaceOptions.TransparentHugePages"/> is <see cref="TransparentHugePageMode.Always"/> (fixed at construction).</summary>
    internal bool ThpAlways => _thp;

    /// <summary>
    /// Whether anonymous faults map 2 MiB pages here: <see cref="AddressSpaceOptions.TransparentHugePages"/> as fixed at
    /// construction.
    /// </summary>
    public TransparentHugePageMode TransparentHugePages => _thp ? TransparentHugePageMode.Always : TransparentHugePageMode.Never;

    /// <summary>
    /// True if the classic path would map a transparent huge page for a not-present fault at <paramref name="address"/>
    /// in <paramref name="vma"/> (Linux <c>thp_vma_allowable_order</c> and <c>do_huge_pmd_anonymous_page</c>'s range
    /// check): huge pages on, an anonymous VMA covering the whole aligned 2 MiB around the address, and a write, or a read
    /// that does not map the zero page. A speculative path that does not handle huge pages (neither published series
    /// does) leaves such a fault to the classic one when it finds the PMD empty.
    /// </summary>
    /// <param name="vma">The VMA as the caller read it.</param>
    /// <param name="address">The faulting address.</param>
    /// <param name="write">True for a write.</param>
    public bool WouldMapHugePage(VmaInfo vma, ulong address, bool write) => HugeFaultApplies(vma.Kind, vma.Start, vma.End, address, write);

    /// <summary>Planted bug for tests: a whole-huge-page zap frees the huge page before its shootdown.</summary>
    internal bool PlantFreeHugeBeforeShootdown { get; set; }

    /// <summary>Planted bug for tests: a huge-PMD split leaves the first subpage's PTE empty (the subpage is lost).</summary>
    internal bool PlantSplitDropsSubpage { get; set; }

    /// <summary>
    /// True if a not-present anonymous fault at <paramref name="address"/> in [<paramref name="vmaStart"/>,
    /// <paramref name="vmaEnd"/>) would map a huge page here (Linux <c>thp_vma_allowable_order</c> plus
    /// <c>do_huge_pmd_anonymous_page</c>'s range check): huge pages on, an anonymous VMA covering the whole aligned 2 MiB,
    /// and a write, or a read that does not map the zero page.
    /// </summary>
    internal bool HugeFaultApplies(MappingKind kind, ulong vmaStart, ulong vmaEnd, ulong address, bool write)
    {
        ulong huge = address & ~(PageTable.PteTableSpan - 1);
        return _thp && kind == MappingKind.Anonymous && (write || !_useZeroPage) && huge >= vmaStart && vmaEnd - huge >= PageTable.PteTableSpan;
    }

    /// <summary>
    /// Which faults the per-VMA lock handles, by modelled kernel version: <see cref="AddressSpaceOptions.PerVmaLockScope"/>
    /// as fixed at construction (a field of this object, read on every per-VMA-lock fault).
    /// </summary>
    public PerVmaLockScope VmaLockScope => _vmaLockScope;

    /// <summary>Replaces the fault strategy (only while no CPU is faulting in this address space).</summary>
    /// <param name="strategy">The new strategy.</param>
    public void SetStrategy(FaultStrategy strategy)
    {
        ArgumentNullException.ThrowIfNull(strategy);
        _strategy = strategy;
    }

    /// <summary>
    /// Frees every frame and page table. Calling it twice is fine; after the machine's disposal it only marks this
    /// address space disposed (its memory went with the machine).
    /// </summary>
    /// <remarks>
    /// Work that still runs in this address space is stopped, not run over: the access path refuses every access from
    /// here on (<see cref="ObjectDisposedException"/>, a TLB hit included); Dispose takes the mmap lock for write (so
    /// system calls and classic faults in flight finish, and those waiting for the lock refuse once they get it) and
    /// waits until no CPU is awake in the address space before it frees anything. If a CPU stays awake in it for
    /// longer than <see cref="MachineOptions.WatchdogTimeout"/> without touching it (a loop that never accesses
    /// memory), Dispose leaks the memory rather than free it under that CPU, and throws.
    /// </remarks>
    /// <exception cref="InvalidOperationException">Called on a CPU with interrupts disabled, or a CPU kept running in
    /// the address space past the watchdog timeout (memory leaked, not freed).</exception>
    public void Dispose()
    {
        Cpu? current = Cpu.Current;
        if (current != null && !ReferenceEquals(current.Machine, _machine))
        {
            current = null; // A CPU of another machine: it has nothing of ours loaded; treat the caller as a plain thread.
        }

        if (current != null && current.IrqsDisabled)
        {
            throw new InvalidOperationException($"AddressSpace.Dispose on CPU {current.Id} with interrupts disabled: it may wait for other CPUs. Enable interrupts first.");
        }

        // Exchange (full fence), one half of a Dekker pair with EnterSlow: the flag is visible before we read the CPU
        // mask and lazy flags below; a CPU that loads this context after it sees the flag and leaves.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _machine.RemoveLabelledLines(_lockLines);

        if (_machine.IsDisposed)
        {
            ReleaseFileMappings();
            return; // The frames and page tables were freed with the machine.
        }

        // Release: every access from here on, TLB hits included, finds a context no CPU has loaded and goes to the
        // slow path, which sees _disposed. Without it a CPU with live TLB entries would read frames freed below.
        Volatile.Write(ref _accessContext, DisposedContext);
        if (current != null && ReferenceEquals(current.Loaded, _tlb))
        {
            current.SwitchToNone();
        }

        _mmapLock.WriteLock(current);
        try
        {
            if (!WaitForCpusToLeave(current, out string? stillRunning))
            {
                throw new InvalidOperationException($"AddressSpace.Dispose: {stillRunning} kept running in the address space for {_machine.Options.WatchdogTimeout.TotalSeconds:F0} s without touching it; its memory is leaked rather than freed under that CPU.");
            }

            // exit_mmap's lru_add_drain: this CPU's new pages go onto the list before they are taken off it. Pages in
            // other CPUs' batches are orphaned by Release and freed by those CPUs when their work ends.
            if (current != null)
            {
                _machine.Lru.DrainAdds(current.Id);
            }

            LruVec lru = _machine.Lru;
            PhysicalMemory memory = _memory;
            long anonymous = 0;
            _pageTable.FreeAll(-1, pte =>
            {
                ref PageFrame frame = ref memory.Frame(pte.Pfn);
                FrameState state = frame.ReadState();
                if (pte.IsHuge)
                {
                    lru.Release(-1, pte.Pfn); // A huge page: one LRU entry, its head; freed whole (FreeAll freed its deposit).
                    anonymous += PageTable.HugePages;
                }
                else if (state == FrameState.Anonymous)
                {
                    lru.Release(-1, pte.Pfn);
                    anonymous++;
                }
                else if (state == FrameState.ZeroPage)
                {
                    // The shared zero page: neither counted nor freed (the machine owns it).
                }
                else
                {
                    // Atomic: a page-cache page's map count is shared by every address space mapping it, under other PTLs.
                    Interlocked.Decrement(ref frame.MapCount);
                }
            });
            _machine.Memcg.Uncharge(-1, anonymous);
            ReleaseFileMappings();
            _index.Replace(_index.SnapshotLive().ToArray(), []);
        }
        finally
        {
            // Release (as WriteUnlock): waiters wake, take the lock and refuse (they check _disposed).
            Volatile.Write(ref _lockSeq.Value, _lockSeq.Value + 1);
            _mmapLock.WriteUnlock();
        }
    }

    /// <summary>Every mapped file loses this address space's mappings (so it can be disposed).</summary>
    private void ReleaseFileMappings()
    {
        foreach (Vma v in _index.SnapshotLive())
        {
            v.File?.RemoveMapping();
        }
    }

    /// <summary>
    /// Waits until every CPU that has this address space loaded, other than <paramref name="self"/>, is asleep (lazy)
    /// or has left; false after the machine's watchdog timeout, naming the CPUs still awake in it.
    /// </summary>
    private bool WaitForCpusToLeave(Cpu? self, out string? stillRunning)
    {
        long deadline = Stopwatch.GetTimestamp() + (long)(_machine.Options.WatchdogTimeout.TotalSeconds * Stopwatch.Frequency);
        ulong selfBit = self == null ? 0 : 1UL << self.Id;
        Cpu[] cpus = _machine.CpuArray;
        Backoff backoff = Backoff.ForLock(timeShared: _machine.TimeShared);
        while (true)
        {
            ulong awake = 0;
            ulong mask = _tlb.CpuMask & ~selfBit;
            while (mask != 0)
            {
                int c = System.Numerics.BitOperations.TrailingZeroCount(mask);
                mask &= mask - 1;
                if (!cpus[c].IsLazy)
                {
                    awake |= 1UL << c;
                }
            }

            if (awake == 0)
            {
                stillRunning = null;
                return true;
            }

            // The library's spin policy (Backoff), serving IPIs (an awake CPU may be shooting us down before it can
            // leave) and yielding between phases; the deadline is read only at those yields.
            if (backoff.SpinOrYield(self) && Stopwatch.GetTimestamp() > deadline)
            {
                stillRunning = Cpu.DescribeCpus(awake);
                return false;
            }
        }
    }

    // ---- hooks ----

    [Conditional("DEBUG")]
    private static void Hook(HookPoint point, Cpu cpu) => cpu.Machine.Hooks.Fire(point, cpu);
}
