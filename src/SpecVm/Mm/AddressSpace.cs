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
    private readonly RwSemaphore _mmapLock = new();
    /// <summary>What the access path compares a CPU's loaded context with once this address space is disposed.</summary>
    private static readonly TlbContext DisposedContext = new();

    private readonly TlbContext _tlb = new();
    private readonly PageTable _pageTable;
    private readonly VmaIndex _index = new();
    private readonly VmaSlab _slab;
    private readonly AddressSpaceOptions _options;
    private readonly bool _targeted;
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
        _accessContext = _tlb;
        _machine = machine;
        _memory = machine.Memory;
        _strategy = strategy;
        _pageTable = new PageTable(machine.Frames, -1);
        _slab = new VmaSlab(machine.Srcu, _options.PoisonRetiredVmas || machine.Options.PoisonRetiredVmas);
        _gathers = new long[]?[machine.CpuCount];
        _scratch = new List<Vma>?[machine.CpuCount];
    }

    /// <summary>The machine.</summary>
    public Machine Machine => _machine;

    /// <summary>The page-fault strategy.</summary>
    public FaultStrategy Strategy => _strategy;

    /// <summary>The mmap lock (Linux <c>mmap_lock</c>, once <c>mmap_sem</c>).</summary>
    public RwSemaphore MmapLock => _mmapLock;

    /// <summary>The TLB context: id, generation and CPU mask.</summary>
    public TlbContext TlbContext => _tlb;

    /// <summary>The page table.</summary>
    public PageTable PageTable => _pageTable;

    /// <summary>The VMAs.</summary>
    public VmaIndex Vmas => _index;

    /// <summary>The VMA slab (grace-period reuse, poisoning, counters).</summary>
    public VmaSlab Slab => _slab;

    /// <summary>The options.</summary>
    public AddressSpaceOptions Options => _options;

    /// <summary>Planted bug for tests: targeted shootdowns interrupt no CPU at all.</summary>
    internal bool PlantTargetNoCpus { get; set; }

    /// <summary>Planted bug for tests: Unmap frees detached page tables before its shootdown.</summary>
    internal bool PlantFreeTablesBeforeShootdown { get; set; }

    /// <summary>The per-VMA-lock sequence (Linux <c>mm_lock_seq</c>), bumped when the mmap write lock is released.</summary>
    internal ref int LockSeq => ref _lockSeq.Value;

    /// <summary>
    /// Maps <paramref name="length"/> bytes (<c>mmap</c>) and returns the start address. Adjacent anonymous mappings
    /// with the same protection merge into one VMA, as Linux's <c>vma_merge</c> does.
    /// </summary>
    /// <param name="cpu">The CPU doing the call.</param>
    /// <param name="length">Bytes: positive, a multiple of 4096.</param>
    /// <param name="protection">The protection.</param>
    /// <param name="kind">The backing.</param>
    /// <param name="file">The file, for file mappings.</param>
    /// <param name="fileOffset">Byte offset in the file, page aligned.</param>
    /// <param name="fixedAddress">Map exactly here (refusing overlap, like <c>MAP_FIXED_NOREPLACE</c>); null to let SpecVm choose.</param>
    public ulong Map(Cpu cpu, ulong length, Protection protection, MappingKind kind = MappingKind.Anonymous, SimFile? file = null, long fileOffset = 0, ulong? fixedAddress = null)
    {
        CheckSyscall(cpu);
        CheckLength(length);
        CheckProtection(protection);
        CheckBacking(length, protection, kind, file, fileOffset);
        if (fixedAddress is ulong fixedStart)
        {
            CheckRange(fixedStart, length, nameof(fixedAddress));
        }

        // The file counts this mapping from here on (it refuses to be disposed while mapped); undone if Map fails.
        if (file != null && !file.TryAddMapping())
        {
            throw new ObjectDisposedException(nameof(SimFile), $"File {file.Id} was disposed; it cannot be mapped.");
        }

        bool published = false;
        WriteLock(cpu);
        try
        {
            ulong start;
            if (fixedAddress is ulong f)
            {
                Vma? clash = _index.FirstOverlap(f, f + length);
                if (clash != null)
                {
                    throw new ArgumentException($"Fixed mapping [0x{f:x}, 0x{f + length:x}) overlaps an existing mapping {clash}.", nameof(fixedAddress));
                }

                start = f;
            }
            else
            {
                start = FindGap(length);
            }

            ulong end = start + length;

            // Merge with neighbours that continue it (Linux vma_merge): adjacent, same protection and backing, and
            // for files the next pages of the same file. mprotect merges the same way, so VMAs never fragment.
            var merged = new Extent(start, end, protection, kind, file, fileOffset / PhysicalMemory.PageSize);
            var remove = new List<Vma>(2);
            Vma? prev = start > MinAddress ? _index.Find(start - 1) : null;
            if (prev != null && Extent.Of(prev).CanJoin(merged))
            {
                remove.Add(prev);
                merged = Extent.Of(prev).Join(merged);
            }

            Vma? next = _index.Find(end);
            if (next != null && merged.CanJoin(Extent.Of(next)))
            {
                remove.Add(next);
                merged = merged.Join(Extent.Of(next));
            }

            foreach (Vma v in remove)
            {
                BeginChange(cpu, v);
            }

            Vma fresh = _slab.Allocate();
            fresh.Initialize(this, merged.Start, merged.End, protection, kind, file, merged.FilePage);
            _index.Replace(remove, [fresh]);
            published = true;
            foreach (Vma v in remove)
            {
                EndChangeAndRetire(v);
            }

            return start;
        }
        finally
        {
            if (!published)
            {
                file?.RemoveMapping();
            }

            WriteUnlock(cpu);
        }
    }

    /// <summary>
    /// Unmaps [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) (<c>munmap</c>): splits
    /// VMAs at the edges, zaps PTEs, shoots down TLBs, frees frames and empty page tables. Unmapping a range with no
    /// mapping is allowed (as POSIX says).
    /// </summary>
    /// <param name="cpu">The CPU doing the call.</param>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="length">Bytes: positive, a multiple of 4096.</param>
    public void Unmap(Cpu cpu, ulong start, ulong length)
    {
        CheckSyscall(cpu);
        CheckLength(length);
        CheckRange(start, length, nameof(start));
        ulong end = start + length;
        WriteLock(cpu);
        bool downgraded = false;
        try
        {
            var old = new List<Vma>();
            _index.CollectOverlapping(start, end, old);
            if (old.Count == 0)
            {
                return;
            }

            var pieces = new List<Vma>(2);
            foreach (Vma v in old)
            {
                BeginChange(cpu, v);
                if (v.Start < start)
                {
                    pieces.Add(Clone(v, v.Start, start, v.Protection));
                }

                if (v.End > end)
                {
                    pieces.Add(Clone(v, end, v.End, v.Protection));
                }
            }

            Hook(HookPoint.WriterBeforeIndexPublish, cpu);
            _index.Replace(old, pieces);
            Hook(HookPoint.WriterAfterIndexPublish, cpu);
            foreach (Vma v in old)
            {
                // Release: readers that find this VMA through an old index snapshot see it detached.
                Volatile.Write(ref v.Detached, 1);
            }

            ulong zapStart = Math.Max(start, old[0].Start);
            ulong zapEnd = Math.Min(end, old[^1].End);

            // The hole is free again: let the next top-down placement find it (Linux searches for the highest gap
            // below mmap_base; without this, map/unmap loops march down the address space and every step needs new
            // upper-level page tables). Under the write lock: Map reads the hint under it.
            if (zapEnd <= MmapBase && zapEnd > _mmapHint)
            {
                _mmapHint = zapEnd;
            }

            if (_options.DowngradeOnUnmap)
            {
                // The VMAs are detached and the new index is published: the rest needs no write lock (Linux 4.20+
                // zaps under the read lock). Faults in other VMAs proceed; no writer can enter until we are done,
                // and no fault can reach the detached range, so the page tables freed below stay unreachable.
                DowngradeToRead(cpu);
                downgraded = true;
            }

            // Zap VMA by VMA, not the whole span: only VMAs have pages, and a sparse range (say, all of user space)
            // would otherwise cost a walk per 2 MiB of it, under the mmap lock (Linux's unmap_vmas goes VMA by VMA).
            int gathered = 0;
            bool zapped = false;
            foreach (Vma v in old)
            {
                ZapRange(cpu, Math.Max(start, v.Start), Math.Min(end, v.End), zapStart, zapEnd, ref gathered, ref zapped);
            }

            // Free the page tables whose region no VMA covers any more (Linux free_pgtables), again only where the
            // old VMAs were: PTE tables (2 MiB), then PMD (1 GiB) and PUD (512 GiB) tables, so that a long churn of
            // map and unmap over the address space returns every table but the root.
            List<long>? detached = null;
            for (int level = 1; level <= 3; level++)
            {
                ulong span = PageTable.SpanOf(level);
                ulong nextRegion = 0;
                foreach (Vma v in old)
                {
                    ulong from = Math.Max(nextRegion, Math.Max(start, v.Start) & ~(span - 1));
                    ulong to = Math.Min(end, v.End);
                    for (ulong region = from; region < to; region += span)
                    {
                        if (_index.FirstOverlap(region, region + span) == null)
                        {
                            _pageTable.DetachTables(region, level, detached ??= []);
                        }

                        nextRegion = region + span;
                    }
                }
            }

            if (detached is { Count: 0 })
            {
                detached = null;
            }

            if (PlantFreeTablesBeforeShootdown && detached != null)
            {
                // Planted bug for tests: free page tables before the TLB shootdown has been acknowledged.
                foreach (long table in detached)
                {
                    _machine.Frames.Free(cpu.Id, table);
                }

                detached = null;
            }

            Hook(HookPoint.WriterBetweenZapAndShootdown, cpu);
            if (zapped || detached != null)
            {
                FlushTlbRange(cpu, zapStart, zapEnd, tablesFreed: detached != null);
            }

            Hook(HookPoint.WriterAfterShootdown, cpu);
            FreeGathered(cpu, gathered);
            if (detached != null)
            {
                foreach (long table in detached)
                {
                    _machine.Frames.Free(cpu.Id, table);
                }
            }

            foreach (Vma v in old)
            {
                EndChangeAndRetire(v);
            }
        }
        finally
        {
            if (downgraded)
            {
                _mmapLock.ExitRead();
            }
            else
            {
                WriteUnlock(cpu);
            }
        }
    }

    /// <summary>
    /// Changes the protection of [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>)
    /// (<c>mprotect</c>). The whole range must be mapped. PTEs are updated under the PTL; narrowing shoots down TLBs.
    /// </summary>
    /// <param name="cpu">The CPU doing the call.</param>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="length">Bytes: positive, a multiple of 4096.</param>
    /// <param name="protection">The new protection.</param>
    public void Protect(Cpu cpu, ulong start, ulong length, Protection protection)
    {
        CheckSyscall(cpu);
        CheckLength(length);
        CheckRange(start, length, nameof(start));
        CheckProtection(protection);
        ulong end = start + length;
        WriteLock(cpu);
        try
        {
            var old = new List<Vma>();
            _index.CollectOverlapping(start, end, old);
            CheckFullyMapped(old, start, end, nameof(start));
            foreach (Vma v in old)
            {
                if (v.Kind == MappingKind.SharedFile && (protection & Protection.Write) != 0 && !v.File!.IsWritable)
                {
                    throw new ArgumentException($"EACCES: file {v.File.Id} was opened read-only; a shared mapping of it cannot be made writable.", nameof(protection));
                }
            }

            // The new layout as extents (the untouched remainders, the changed middle), joined where they continue
            // each other, with the neighbours outside the range when they join too (Linux vma_merge: mprotect back
            // and forth leaves one VMA).
            var extents = new List<Extent>(old.Count + 4);
            foreach (Vma v in old)
            {
                Extent e = Extent.Of(v);
                if (v.Start < start)
                {
                    extents.Add(e.Slice(v.Start, start, v.Protection));
                }

                extents.Add(e.Slice(Math.Max(v.Start, start), Math.Min(v.End, end), protection));
                if (v.End > end)
                {
                    extents.Add(e.Slice(end, v.End, v.Protection));
                }
            }

            Vma? prev = start > MinAddress ? _index.Find(start - 1) : null;
            if (prev != null && prev.End == start && Extent.Of(prev).CanJoin(extents[0]))
            {
                old.Insert(0, prev);
                extents.Insert(0, Extent.Of(prev));
            }

            Vma? next = _index.Find(end);
            if (next != null && next.Start == end && extents[^1].CanJoin(Extent.Of(next)))
            {
                old.Add(next);
                extents.Add(Extent.Of(next));
            }

            var pieces = new List<Vma>(extents.Count);
            Extent run = extents[0];
            for (int i = 1; i <= extents.Count; i++)
            {
                if (i < extents.Count && run.CanJoin(extents[i]))
                {
                    run = run.Join(extents[i]);
                    continue;
                }

                Vma piece = _slab.Allocate();
                run.File?.AddMappingOfLive(); // Each old VMA still holds its own count until retired: the file is alive.
                piece.Initialize(this, run.Start, run.End, run.Protection, run.Kind, run.File, run.FilePage);
                pieces.Add(piece);
                if (i < extents.Count)
                {
                    run = extents[i];
                }
            }

            foreach (Vma v in old)
            {
                BeginChange(cpu, v);
            }

            Hook(HookPoint.WriterBeforeIndexPublish, cpu);
            _index.Replace(old, pieces);
            Hook(HookPoint.WriterAfterIndexPublish, cpu);
            foreach (Vma v in old)
            {
                // Release: readers that find this VMA through an old index snapshot see it detached (as in Unmap).
                Volatile.Write(ref v.Detached, 1);
            }

            bool narrowed = false;
            foreach (Vma piece in pieces)
            {
                if (piece.End > start && piece.Start < end)
                {
                    narrowed |= ChangePtes(cpu, piece, Math.Max(piece.Start, start), Math.Min(piece.End, end));
                }
            }

            Hook(HookPoint.WriterBetweenZapAndShootdown, cpu);
            if (narrowed)
            {
                FlushTlbRange(cpu, start, end, tablesFreed: false);
            }

            foreach (Vma v in old)
            {
                EndChangeAndRetire(v);
            }
        }
        finally
        {
            WriteUnlock(cpu);
        }
    }

    /// <summary>
    /// Drops the pages of [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>)
    /// (<c>madvise(MADV_DONTNEED)</c>) under the mmap lock for read, leaving the VMAs: the next touch faults in a zero
    /// page (anonymous) or the page-cache page (file). The whole range must be mapped.
    /// </summary>
    /// <param name="cpu">The CPU doing the call.</param>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="length">Bytes: positive, a multiple of 4096.</param>
    public void DontNeed(Cpu cpu, ulong start, ulong length)
    {
        CheckSyscall(cpu);
        CheckLength(length);
        CheckRange(start, length, nameof(start));
        ulong end = start + length;
        ReadLockMm(cpu);
        try
        {
            // A per-CPU scratch list: DontNeed runs under the read lock, so CPUs may be here at once; one list each
            // keeps the loaders' madvise path allocation-free.
            List<Vma> vmas = _scratch[cpu.Id] ??= new List<Vma>(4);
            vmas.Clear();
            _index.CollectOverlapping(start, end, vmas);
            CheckFullyMapped(vmas, start, end, nameof(start));
            vmas.Clear();
            int gathered = Zap(cpu, start, end, out bool zapped);
            Hook(HookPoint.WriterBetweenZapAndShootdown, cpu);
            if (zapped)
            {
                FlushTlbRange(cpu, start, end, tablesFreed: false);
            }

            Hook(HookPoint.WriterAfterShootdown, cpu);
            FreeGathered(cpu, gathered);
        }
        finally
        {
            _mmapLock.ExitRead();
        }
    }

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

        _mmapLock.EnterWrite(current);
        try
        {
            if (!WaitForCpusToLeave(current, out string? stillRunning))
            {
                throw new InvalidOperationException($"AddressSpace.Dispose: {stillRunning} kept running in the address space for {_machine.Options.WatchdogTimeout.TotalSeconds:F0} s without touching it; its memory is leaked rather than freed under that CPU.");
            }

            FrameAllocator frames = _machine.Frames;
            PhysicalMemory memory = _memory;
            _pageTable.FreeAll(-1, pte =>
            {
                ref PageFrame frame = ref memory.Frame(pte.Pfn);
                if (frame.ReadState() == FrameState.Anonymous)
                {
                    frames.Free(-1, pte.Pfn);
                }
                else
                {
                    // Atomic: a page-cache page's map count is shared by every address space mapping it, under other PTLs.
                    Interlocked.Decrement(ref frame.MapCount);
                }
            });
            ReleaseFileMappings();
            _index.Replace(_index.SnapshotLive().ToArray(), []);
        }
        finally
        {
            // Release (as WriteUnlock): waiters wake, take the lock and refuse (they check _disposed).
            Volatile.Write(ref _lockSeq.Value, _lockSeq.Value + 1);
            _mmapLock.ExitWrite();
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

            if (Stopwatch.GetTimestamp() > deadline)
            {
                stillRunning = Cpu.DescribeCpus(awake);
                return false;
            }

            if (self != null)
            {
                self.Relax(); // Serve IPIs: an awake CPU may be shooting us down before it can leave.
            }

            Thread.Yield();
        }
    }

    // ---- hooks ----

    [Conditional("DEBUG")]
    private static void Hook(HookPoint point, Cpu cpu) => cpu.Machine.Hooks.Fire(point, cpu);

    // ---- locking helpers ----

    private void WriteLock(Cpu cpu)
    {
        if (!_mmapLock.TryEnterWrite())
        {
            long t0 = VirtualTime.Timestamp();
            _mmapLock.EnterWrite(cpu);
            cpu.Count(CpuCounter.MmapWaitTicks, VirtualTime.Timestamp() - t0);
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            // Acquire read: Dispose held the lock and freed everything while we waited for it.
            _mmapLock.ExitWrite();
            throw new ObjectDisposedException(nameof(AddressSpace));
        }

        cpu.Count(CpuCounter.MmapWriteAcquisitions);
        _writeStart = VirtualTime.Timestamp();
    }

    private void WriteUnlock(Cpu cpu)
    {
        cpu.Count(CpuCounter.MmapWriteHoldTicks, VirtualTime.Timestamp() - _writeStart);

        // Release (Linux vma_end_write_all): every VMA marked in this write section becomes read-lockable again,
        // at once, before the mmap lock itself is released.
        Volatile.Write(ref _lockSeq.Value, _lockSeq.Value + 1);
        _mmapLock.ExitWrite();
    }

    /// <summary>
    /// Turns this CPU's write hold into a read hold (Linux <c>mmap_write_downgrade</c>, which also ends every VMA write
    /// lock of the section: <c>vma_end_write_all</c>).
    /// </summary>
    private void DowngradeToRead(Cpu cpu)
    {
        cpu.Count(CpuCounter.MmapWriteHoldTicks, VirtualTime.Timestamp() - _writeStart);

        // Release (as WriteUnlock): every VMA marked in this write section becomes read-lockable again before readers
        // may enter; the detached ones are refused by their Detached flag, set before this.
        Volatile.Write(ref _lockSeq.Value, _lockSeq.Value + 1);
        _mmapLock.DowngradeWrite();
    }

    /// <summary>Takes the mmap lock for read on behalf of <paramref name="cpu"/>, counting waits.</summary>
    /// <param name="cpu">The CPU.</param>
    internal void ReadLockMm(Cpu cpu)
    {
        // down_read: one fetch-add on the fast path (no CAS loop first); the clock is read only if we waited.
        long waited = _mmapLock.EnterReadTimed(cpu);
        if (waited != 0)
        {
            cpu.Count(CpuCounter.MmapWaitTicks, waited);
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            // Acquire read: Dispose held the lock and freed everything while we waited for it.
            _mmapLock.ExitRead();
            throw new ObjectDisposedException(nameof(AddressSpace));
        }

        cpu.Count(CpuCounter.MmapReadAcquisitions);
    }

    private void BeginChange(Cpu cpu, Vma v)
    {
        // The sequence count goes odd before anything about the VMA or its pages changes: speculative readers
        // abort from here on. Then per-VMA-lock readers are fenced out and drained.
        VirtualTime.Access(v, Vma.LineSeq, LineAccess.Store);
        v.Seq.WriteBegin();
        v.WriteLock(_lockSeq.Value, cpu);
    }

    private void EndChangeAndRetire(Vma v)
    {
        v.File?.RemoveMapping();
        // Release, before the sequence count closes: a reader that sees the final even count also sees the VMA
        // detached, so "count unchanged" can never be mistaken for "still in the tree".
        Volatile.Write(ref v.Detached, 1);
        VirtualTime.Access(v, Vma.LineSeq, LineAccess.Store);
        v.Seq.WriteEnd();
        _slab.Retire(v);
    }

    private Vma Clone(Vma v, ulong start, ulong end, Protection protection)
    {
        Vma piece = _slab.Allocate();
        v.File?.AddMappingOfLive(); // The piece maps the file too; v still holds its own count, so the file is alive.
        long fileOffset = v.File == null ? 0 : v.FilePageOffset + (long)((start - v.Start) >> 12);
        piece.Initialize(this, start, end, protection, v.Kind, v.File, fileOffset);
        return piece;
    }

    private ulong FindGap(ulong length)
    {
        for (int pass = 0; pass < 2; pass++)
        {
            ulong hint = _mmapHint;
            while (hint >= MinAddress + length)
            {
                ulong start = hint - length;
                Vma? clash = _index.FirstOverlap(start, hint);
                if (clash == null)
                {
                    _mmapHint = start;
                    return start;
                }

                hint = clash.Start;
            }

            _mmapHint = MmapBase; // Wrap around once and look for holes left by unmaps.
        }

        throw new InvalidOperationException($"ENOMEM: no free range of {length} bytes in the address space.");
    }

    // ---- argument checks ----

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNotOnCpuThread(Cpu cpu) =>
        throw new InvalidOperationException($"CPU {cpu.Id} is used from a thread that is not that CPU (thread {Environment.CurrentManagedThreadId}): run the code with Machine.Run, or take the CPU with Machine.Attach.");

    /// <summary>The checks of every operation: a CPU of this machine, on its own thread, and not disposed.</summary>
    private void CheckCpu(Cpu cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        if (!ReferenceEquals(cpu.Machine, _machine))
        {
            throw new ArgumentException($"CPU {cpu.Id} belongs to another machine.", nameof(cpu));
        }

        // Acquire read of the disposed flag: a misuse check (use after Dispose); the access path has its own.
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!cpu.IsCurrentThread)
        {
            ThrowNotOnCpuThread(cpu);
        }
    }

    /// <summary>The checks of a system call (mmap, munmap, mprotect, madvise): those of <see cref="CheckCpu"/>, and interrupts enabled.</summary>
    private void CheckSyscall(Cpu cpu)
    {
        CheckCpu(cpu);
        if (cpu.IrqsDisabled)
        {
            // Checked before anything changes: a system call may sleep on the mmap lock and sends shootdowns, and
            // neither is allowed with interrupts off; failing half-way would leave frames stuck awaiting a flush.
            throw new InvalidOperationException($"CPU {cpu.Id}: a system call with interrupts disabled (it may sleep and must shoot down TLBs). Enable interrupts first.");
        }
    }

    private static void CheckLength(ulong length)
    {
        if (length == 0 || (length & PageMask) != 0)
        {
            throw new ArgumentException($"Length must be a positive multiple of 4096 bytes (got {length}).", nameof(length));
        }

        if (length > PageTable.UserTop - MinAddress)
        {
            // Larger than user space: no placement can hold it, and start + length would wrap around.
            throw new ArgumentOutOfRangeException(nameof(length), length, $"Length exceeds the user address space (0x{PageTable.UserTop - MinAddress:x} bytes).");
        }
    }

    private static void CheckRange(ulong start, ulong length, string name)
    {
        if ((start & PageMask) != 0)
        {
            throw new ArgumentException($"Address 0x{start:x} is not page aligned.", name);
        }

        if (start < MinAddress || start >= PageTable.UserTop || length > PageTable.UserTop - start)
        {
            throw new ArgumentOutOfRangeException(name, $"Range [0x{start:x}, +0x{length:x}) is outside user space [0x{MinAddress:x}, 0x{PageTable.UserTop:x}).");
        }
    }

    private static void CheckProtection(Protection protection)
    {
        if ((protection & ~(Protection.Read | Protection.Write | Protection.Execute)) != 0)
        {
            throw new ArgumentException($"Unknown protection bits: {protection}.", nameof(protection));
        }
    }

    private void CheckBacking(ulong length, Protection protection, MappingKind kind, SimFile? file, long fileOffset)
    {
        switch (kind)
        {
            case MappingKind.Anonymous:
                if (file != null)
                {
                    throw new ArgumentException("An anonymous mapping takes no file.", nameof(file));
                }

                break;
            case MappingKind.PrivateFile:
            case MappingKind.SharedFile:
                if (file == null)
                {
                    throw new ArgumentNullException(nameof(file), $"A {kind} mapping needs a file.");
                }

                if (!ReferenceEquals(file.Machine, _machine))
                {
                    throw new ArgumentException($"File {file.Id} belongs to another machine (its page cache is in that machine's memory).", nameof(file));
                }

                ObjectDisposedException.ThrowIf(file.IsDisposed, file);

                // length is at most the user space size (CheckLength), so it fits a long; subtracting avoids the
                // overflow of fileOffset + length near 2^63.
                if (fileOffset < 0 || (fileOffset & (long)PageMask) != 0 || fileOffset > file.Length || (long)length > file.Length - fileOffset)
                {
                    throw new ArgumentOutOfRangeException(nameof(fileOffset), fileOffset, $"File range [{fileOffset}, +{length}) must be page aligned and inside the file (length {file.Length}).");
                }

                if (kind == MappingKind.SharedFile && (protection & Protection.Write) != 0 && !file.IsWritable)
                {
                    throw new ArgumentException($"EACCES: file {file.Id} was opened read-only; a shared mapping of it cannot be writable.", nameof(protection));
                }

                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown mapping kind.");
        }
    }

    private static void CheckFullyMapped(List<Vma> vmas, ulong start, ulong end, string name)
    {
        ulong at = start;
        foreach (Vma v in vmas)
        {
            if (v.Start > at)
            {
                break;
            }

            at = Math.Max(at, v.End);
        }

        if (at < end)
        {
            throw new ArgumentException($"ENOMEM: [0x{start:x}, 0x{end:x}) is not fully mapped (hole at 0x{at:x}).", name);
        }
    }

    /// <summary>A range with the attributes that decide whether two VMAs may merge (Linux <c>is_mergeable_vma</c>).</summary>
    private readonly record struct Extent(ulong Start, ulong End, Protection Protection, MappingKind Kind, SimFile? File, long FilePage)
    {
        public static Extent Of(Vma v) => new(v.Start, v.End, v.Protection, v.Kind, v.File, v.FilePageOffset);

        /// <summary>The file page mapped at <see cref="End"/> (one past the last).</summary>
        private long EndFilePage => FilePage + (long)((End - Start) >> PhysicalMemory.PageShift);

        /// <summary>[from, to) of this extent, with another protection.</summary>
        public Extent Slice(ulong from, ulong to, Protection protection) =>
            new(from, to, protection, Kind, File, FilePage + (long)((from - Start) >> PhysicalMemory.PageShift));

        /// <summary>True if <paramref name="next"/> starts where this ends and continues it (same rights, same backing, next file pages).</summary>
        public bool CanJoin(Extent next) =>
            End == next.Start && Protection == next.Protection && Kind == next.Kind && ReferenceEquals(File, next.File)
            && (File == null || EndFilePage == next.FilePage);

        /// <summary>This extent extended over <paramref name="next"/> (which <see cref="CanJoin"/>).</summary>
        public Extent Join(Extent next) => this with { End = next.End };
    }
}
