using System.Runtime.CompilerServices;
using SpecVm.Sync;

namespace SpecVm.Mm;

/// <summary>
/// A virtual memory area (Linux <c>vm_area_struct</c>): a page-aligned range with one protection and one backing,
/// its sequence count for speculative faults (<c>vm_sequence</c>) and its per-VMA lock state (<c>vm_lock_seq</c> and a
/// reader count, Linux 6.4).
/// </summary>
/// <remarks>
/// <para>
/// VMAs are never changed in place once published: Map, Unmap and Protect bump the sequence count of every VMA they
/// touch (odd while they work), mark it write-locked for per-VMA-lock readers, and replace it by new VMAs. Retired
/// VMAs go back to the <see cref="VmaSlab"/> only after an SRCU grace period (<c>SLAB_TYPESAFE_BY_RCU</c> style), so a
/// lockless reader may meet a VMA that is detached, or even recycled, and must validate what it read.
/// </para>
/// <para>An instance fits in three 128-byte cache lines plus two for the reader count, which sits alone on its line (pinned by a layout test).</para>
/// </remarks>
public sealed class Vma
{
    internal const ulong PoisonAddress = 0xDEAD_0000_0000_0000;

    private ulong _start;
    private ulong _end;
    private Protection _protection;
    private MappingKind _kind;
    private SimFile? _file;
    private long _filePageOffset;
    private AddressSpace? _mm;
    private readonly VmaSlab _slab;

    /// <summary>The sequence count (Linux <c>vm_sequence</c>): odd while a writer changes or retires this VMA.</summary>
    /// <summary>Virtual-time line ids of this VMA: the sequence count's line, the lock mark's, the reader count's.</summary>
    internal const int LineSeq = 0;
    internal const int LineLockSeq = 1;
    internal const int LineReaders = 2;
    internal const int LineRefs = 3;

    private SeqCount _seq;

    /// <summary>Write-locked for per-VMA-lock readers while this equals the address space's lock sequence.</summary>
    private int _lockSeq = -1;

    /// <summary>
    /// Per-VMA-lock readers inside (Linux 6.15's <c>vm_refcnt</c>, reader part), alone on its cache line: every
    /// per-VMA-lock fault writes it twice, and sharing a line with the range and sequence count that every faulter
    /// reads would make those reads miss (6.15 puts <c>vm_refcnt</c> on its own line for this reason).
    /// </summary>
    private IsolatedInt _readers;
    private IsolatedInt _refs;

    /// <summary>Nonzero once removed from the index (Linux's <c>vma_has_changed</c> checks the tree node for this).</summary>
    private int _detached;

    /// <summary>Nonzero while sitting in the slab after retirement (with poisoning on).</summary>
    private int _poisoned;

    internal Vma(VmaSlab slab) => _slab = slab;

    /// <summary>The first address.</summary>
    public ulong Start
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            CheckPoison();
            return _start;
        }
    }

    /// <summary>One past the last address.</summary>
    public ulong End
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            CheckPoison();
            return _end;
        }
    }

    /// <summary>Bytes covered.</summary>
    public ulong Length => End - Start;

    /// <summary>The protection.</summary>
    public Protection Protection
    {
        get
        {
            CheckPoison();
            return _protection;
        }
    }

    /// <summary>The backing kind.</summary>
    public MappingKind Kind
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            CheckPoison();
            return _kind;
        }
    }

    /// <summary>The file, for file mappings.</summary>
    public SimFile? File => _file;

    /// <summary>The file page that <see cref="Start"/> maps.</summary>
    public long FilePageOffset => _filePageOffset;

    /// <summary>The owning address space.</summary>
    public AddressSpace? AddressSpace => _mm;

    /// <summary>True once removed from its address space.</summary>
    public bool IsDetached => Volatile.Read(ref _detached) != 0;

    /// <summary>The sequence count (by reference).</summary>
    internal ref SeqCount Seq
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            CheckPoison();
            return ref _seq;
        }
    }

    /// <summary>The detached flag (by reference).</summary>
    internal ref int Detached
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            CheckPoison();
            return ref _detached;
        }
    }

    /// <summary>
    /// A reference count alone on its cache line, for strategies that pin the VMA with an atomic per fault (the
    /// speculative-refcount variant); the address space itself never reads it.
    /// </summary>
    internal ref int Refs => ref _refs.Value;

    /// <summary>The per-VMA-lock reader count, by reference (layout tests).</summary>
    internal ref int ReaderCount => ref _readers.Value;

    /// <summary>True while the VMA sits poisoned in the slab (read without counting a poisoned read; for checkers).</summary>
    internal bool IsPoisoned => Volatile.Read(ref _poisoned) != 0;

    /// <summary>True if <paramref name="address"/> lies in this VMA.</summary>
    /// <param name="address">A user address.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Contains(ulong address) => address >= Start && address < End;

    /// <summary>True if the protection allows the access (write and execute each imply read, as on x86 Linux).</summary>
    /// <param name="write">True for a write.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Allows(bool write)
    {
        Protection p = Protection;
        // Any right makes a page readable: x86 cannot express write-only or execute-only pages (without protection
        // keys), so Linux maps PROT_EXEC and PROT_WRITE pages readable; the PTE flags (FaultCore.PteFlagsFor) agree.
        return write ? (p & Protection.Write) != 0 : p != Protection.None;
    }

    /// <summary>The file page index that <paramref name="address"/> maps.</summary>
    /// <param name="address">An address in this VMA.</param>
    public long FilePageOf(ulong address) => _filePageOffset + (long)((address - Start) >> 12);

    internal void Initialize(AddressSpace mm, ulong start, ulong end, Protection protection, MappingKind kind, SimFile? file, long filePageOffset)
    {
        _mm = mm;
        _start = start;
        _end = end;
        _protection = protection;
        _kind = kind;
        _file = file;
        _filePageOffset = filePageOffset;
        _lockSeq = -1;
        _readers.Value = 0;
        _detached = 0;
        _poisoned = 0;

        // Seq keeps counting across reuse (never reset): a reader holding a stale start value of a recycled VMA
        // then sees a different count, which is what SLAB_TYPESAFE_BY_RCU readers rely on.
    }

    internal void Poison()
    {
        _start = PoisonAddress;
        _end = PoisonAddress;
        _protection = Protection.None;
        _file = null;
        _mm = null;
        // Release: the poison values are visible before the flag that tells readers to count the read.
        Volatile.Write(ref _poisoned, 1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckPoison()
    {
        if (_poisoned != 0)
        {
            ReportPoisonedRead();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReportPoisonedRead() => _slab.ReportPoisonedRead();

    /// <summary>Per-VMA lock, read side (<c>vma_start_read</c>): fails if a writer marked this VMA or is marking it.</summary>
    /// <param name="mmLockSeq">The address space's current lock sequence.</param>
    internal bool TryReadLock(ref int mmLockSeq)
    {
        // Acquire reads: a VMA marked by the current write section is locked; don't bother bouncing its line.
        VirtualTime.Access(this, LineLockSeq, LineAccess.Load);
        if (Volatile.Read(ref _lockSeq) == Volatile.Read(ref mmLockSeq))
        {
            return false;
        }

        // Full fence (Interlocked), one half of a Dekker pair with WriteLock: we publish our reader count, then
        // re-read the mark; the writer publishes the mark, then reads the reader count. One of us sees the other.
        VirtualTime.Access(this, LineReaders, LineAccess.Rmw);
        Interlocked.Increment(ref _readers.Value);
        if (Volatile.Read(ref _lockSeq) == Volatile.Read(ref mmLockSeq))
        {
            Interlocked.Decrement(ref _readers.Value);
            return false;
        }

        return true;
    }

    /// <summary>Per-VMA lock, read release (<c>vma_end_read</c>).</summary>
    internal void ReadUnlock()
    {
        // Full fence: the fault's work is done before the writer may see zero readers.
        VirtualTime.Access(this, LineReaders, LineAccess.Rmw);
        if (Interlocked.Decrement(ref _readers.Value) < 0)
        {
            Interlocked.Increment(ref _readers.Value);
            throw new SynchronizationLockException("Vma.ReadUnlock without a matching read lock.");
        }
    }

    /// <summary>Per-VMA lock, write side (<c>vma_start_write</c>): mark for this write section and wait out readers.</summary>
    /// <param name="mmLockSeq">The address space's current lock sequence (the caller holds the mmap lock for write).</param>
    /// <param name="waiter">Served while waiting.</param>
    internal void WriteLock(int mmLockSeq, ISpinWaiter? waiter)
    {
        if (_lockSeq == mmLockSeq)
        {
            return; // Already marked in this write section.
        }

        // Exchange (full fence): the mark is visible before we read the reader count (Dekker with TryReadLock).
        VirtualTime.Access(this, LineLockSeq, LineAccess.Store);
        Interlocked.Exchange(ref _lockSeq, mmLockSeq);
        VirtualTime.Access(this, LineReaders, LineAccess.Load);
        while (Volatile.Read(ref _readers.Value) != 0)
        {
            // A fault holds this VMA read-locked; it finishes without any lock we hold, so waiting is safe.
            CpuRelax.Step(waiter);
        }
    }

    /// <summary>
    /// Copies this VMA's fields if no writer changed or retired it meanwhile (sequence count even and unchanged, not
    /// poisoned); reads no field through the poison check, so a failed copy does not count as a poisoned read.
    /// </summary>
    internal bool TryCopy(out VmaInfo info)
    {
        info = default;
        if (Volatile.Read(ref _poisoned) != 0 || !_seq.TryReadBegin(out int seq))
        {
            return false;
        }

        var copy = new VmaInfo(_start, _end, _protection, _kind, _file, _filePageOffset);

        // ReadRetry fences before re-reading the count (Boehm): the field reads above cannot pass it.
        if (_seq.ReadRetry(seq) || Volatile.Read(ref _poisoned) != 0 || Volatile.Read(ref _detached) != 0)
        {
            return false;
        }

        info = copy;
        return true;
    }

    /// <inheritdoc/>
    public override string ToString() =>
        _poisoned != 0 ? "vma (poisoned)" : $"vma [0x{_start:x}, 0x{_end:x}) {_protection} {_kind}{(_file != null ? $" file {_file.Id} @page {_filePageOffset}" : "")}";

    /// <summary>
    /// An int whose cache line holds nothing else, wherever the object lands: two lines, the value at the second's
    /// start. Objects are only 8-byte aligned, but the line holding byte 128 of this struct starts after byte 0 and
    /// ends before byte 256, so it lies inside the padding.
    /// </summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 2 * CacheLine.Size)]
    private struct IsolatedInt
    {
        [System.Runtime.InteropServices.FieldOffset(CacheLine.Size)]
        public int Value;
    }
}
