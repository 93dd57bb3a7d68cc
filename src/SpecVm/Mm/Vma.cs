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

    /// <summary>
    /// Nonzero once the VMA has an <c>anon_vma</c> (Linux <c>vma-&gt;anon_vma != NULL</c>): set by the first fault under
    /// the mmap lock that maps a private anonymous page here (<c>__anon_vma_prepare</c>), kept by the pieces of a split
    /// and by a merge that includes a VMA having one. Per-VMA-lock faults read it (<see cref="HasAnonVma"/>).
    /// </summary>
    private int _anonVma;

    /// <summary>Nonzero while sitting in the slab after retirement (with poisoning on).</summary>
    private int _poisoned;

    internal Vma(VmaSlab slab) => _slab = slab;

    /// <summary>The slab this VMA comes from and returns to.</summary>
    internal VmaSlab Slab => _slab;

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

    /// <summary>
    /// True once the VMA has an <c>anon_vma</c> (Linux <c>vma-&gt;anon_vma</c>): the first fault that maps a private
    /// anonymous page into it under the mmap lock sets it. Per-VMA-lock faults that would need one fall back to the
    /// mmap lock until then (<see cref="AddressSpaceOptions.PerVmaLockScope"/>).
    /// </summary>
    public bool HasAnonVma
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            // Acquire read: pairs with the release in PrepareAnonVma; the flag only goes from 0 to 1 while the VMA is
            // published, and a stale 0 only sends a fault to the mmap lock, which sets it again (harmlessly).
            VirtualTime.Access(this, LineSeq, LineAccess.Load);
            return Volatile.Read(ref _anonVma) != 0;
        }
    }

    /// <summary>
    /// Starts a lockless read of this VMA (Linux <c>raw_read_seqcount(&amp;vma-&gt;vm_sequence)</c> in the 2017
    /// speculative fault): false, with nothing to read, while a writer is changing or retiring it (its sequence count is
    /// odd). Pair it with <see cref="ReadRetry"/> before acting on what was read.
    /// </summary>
    /// <remarks>
    /// The VMA may be detached, or even recycled for another range, between the lookup and this call (VMAs go back to
    /// the slab after an SRCU grace period, so hold <see cref="Smp.Machine.Srcu"/>'s read lock across the lookup and the
    /// read): check <see cref="IsDetached"/> and <see cref="Contains"/> after this call, as Linux's
    /// <c>vma_has_changed</c> does. One acquire load, no store: readers never write the VMA's line.
    /// </remarks>
    /// <param name="seq">The (even) count to pass to <see cref="ReadRetry"/>.</param>
    /// <returns>True if no writer is inside.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryReadBegin(out int seq)
    {
        VirtualTime.Access(this, LineSeq, LineAccess.Load);
        return Seq.TryReadBegin(out seq);
    }

    /// <summary>
    /// Ends a lockless read (Linux <c>read_seqcount_retry</c>): true if a writer changed or retired the VMA since
    /// <see cref="TryReadBegin"/> returned <paramref name="seq"/>, so everything read or decided from it must be
    /// discarded. Issues a full fence first, so that none of the reads in between is satisfied after the recheck
    /// (Boehm 2012; .NET has no acquire-only fence).
    /// </summary>
    /// <param name="seq">The count <see cref="TryReadBegin"/> returned.</param>
    /// <returns>True to retry or abort.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadRetry(int seq)
    {
        VirtualTime.Access(this, LineSeq, LineAccess.Load);
        return Seq.ReadRetry(seq);
    }

    /// <summary>
    /// As <see cref="ReadRetry"/>, without its fence, for a caller that has just executed one (a successful
    /// <c>PteSlot.TryLock</c> or any other interlocked operation after its reads of the VMA): the speculative fault's
    /// recheck under the PTL. Used without such a fence it can miss a writer.
    /// </summary>
    /// <param name="seq">The count <see cref="TryReadBegin"/> returned.</param>
    /// <returns>True to retry or abort.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadRetryAfterFence(int seq)
    {
        VirtualTime.Access(this, LineSeq, LineAccess.Load);
        return Seq.ReadRetryAfterFence(seq);
    }

    /// <summary>
    /// Per-VMA lock, read side (Linux <c>vma_start_read(mm, vma)</c>, 6.4+): pins the VMA against writers without the
    /// mmap lock. Call it inside an SRCU read section on a VMA just found by <see cref="AddressSpace.Vmas"/>, then check
    /// that the VMA still <see cref="Contains"/> the address; on <see cref="VmaReadLockResult.Locked"/> call
    /// <see cref="ReadUnlock"/> when done, and never take the mmap lock while holding it.
    /// </summary>
    /// <remarks>
    /// Fails (<see cref="VmaReadLockResult.WriteLocked"/>) if a writer marked the VMA in its current mmap write section,
    /// and (<see cref="VmaReadLockResult.Detached"/>) if the VMA was removed from the index: look the address up again.
    /// One CAS on the VMA's reader count, which sits alone on its cache line; the protocol is described on the internal
    /// overload this calls.
    /// </remarks>
    /// <param name="mm">The address space the VMA was found in.</param>
    /// <returns>What the attempt found.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public VmaReadLockResult TryReadLock(AddressSpace mm)
    {
        ArgumentNullException.ThrowIfNull(mm);
        return TryReadLock(ref mm.LockSeq);
    }

    /// <summary>
    /// Takes a reference on the VMA (Linux <c>get_vma</c> of the speculative fault series before v12): one atomic
    /// increment of a count alone on its cache line, the cost a refcounted speculative fault pays on every fault. The
    /// address space never reads the count: it does not keep the VMA alive (an SRCU read section does).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Get()
    {
        // Full fence (Interlocked): the shared line's round trip is the point, as get_vma's atomic_inc costs.
        VirtualTime.Access(this, LineRefs, LineAccess.Rmw);
        Interlocked.Increment(ref _refs.Value);
    }

    /// <summary>Drops a reference taken by <see cref="Get"/> (Linux <c>put_vma</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Put()
    {
        VirtualTime.Access(this, LineRefs, LineAccess.Rmw);
        Interlocked.Decrement(ref _refs.Value); // Full fence: the put, as put_vma's atomic_dec_and_test would.
    }

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

    /// <summary>The per-VMA-lock reader word (count and detached bit), by reference (layout tests).</summary>
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
        _anonVma = 0;
        _poisoned = 0;

        // Seq keeps counting across reuse (never reset): a reader holding a stale start value of a recycled VMA
        // then sees a different count, which is what SLAB_TYPESAFE_BY_RCU readers rely on.
    }

    /// <summary>
    /// Gives the VMA its <c>anon_vma</c> (Linux <c>__anon_vma_prepare</c>); the caller holds the mmap lock (read is
    /// enough: the flag only goes from 0 to 1, and concurrent faulters setting it agree).
    /// </summary>
    internal void PrepareAnonVma()
    {
        // Read first: every mmap-lock fault into the VMA passes here, and storing an unchanged flag would still take
        // the line exclusive on every fault, bouncing it between faulting CPUs.
        VirtualTime.Access(this, LineSeq, LineAccess.Load);
        if (Volatile.Read(ref _anonVma) == 0)
        {
            // Release: pairs with HasAnonVma's acquire (nothing else is published with it; a plain store would do on
            // x86, the release keeps it ordered after the fault's own checks on weaker hardware).
            VirtualTime.Access(this, LineSeq, LineAccess.Store);
            Volatile.Write(ref _anonVma, 1);
        }
    }

    /// <summary>Copies the <c>anon_vma</c> of <paramref name="from"/> to this new, unpublished VMA (split and merge keep it).</summary>
    /// <param name="from">A VMA this one replaces.</param>
    internal void InheritAnonVma(Vma from)
    {
        // Acquire read: the flag may have been set by a fault under the mmap read lock before the caller's write lock.
        if (Volatile.Read(ref from._anonVma) != 0)
        {
            SetAnonVmaUnpublished();
        }
    }

    /// <summary>Gives this new, unpublished VMA an <c>anon_vma</c> (it replaces VMAs that had one).</summary>
    internal void SetAnonVmaUnpublished() =>
        _anonVma = 1; // Plain store: not yet published; the index publication (a release) makes it visible with the rest.


    /// <summary>
    /// Marks the VMA detached (removed from the index), for both kinds of lockless reader: the speculative path reads
    /// <see cref="Detached"/>; the per-VMA lock's <see cref="TryReadLock(ref int)"/> finds the detached bit in the reader word.
    /// The caller holds the mmap lock for write and has write-locked the VMA (<see cref="WriteLock"/>).
    /// </summary>
    internal void MarkDetached()
    {
        // Release: readers that find this VMA through an old index snapshot see it detached.
        Volatile.Write(ref _detached, 1);

        // Or (full fence): the detached bit joins the reader word atomically with any reader's CAS, so a reader either
        // sees the bit and refuses (Linux 6.15: vm_refcnt is 0 once detached, refcount_inc_not_zero fails) or its CAS
        // came first, and then it sees this VMA write-locked when it rechecks the mark.
        VirtualTime.Access(this, LineReaders, LineAccess.Rmw);
        Interlocked.Or(ref _readers.Value, ReaderDetached);
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

    /// <summary>The reader word's detached bit (see <see cref="TryReadLock(ref int)"/>).</summary>
    internal const int ReaderDetached = 1 << 30;

    /// <summary>The reader word's count of per-VMA-lock readers inside.</summary>
    internal const int ReaderMask = ReaderDetached - 1;

    /// <summary>
    /// Readers at most (Linux 6.15 <c>VMA_REF_LIMIT</c>): a CAS that would pass it refuses instead of carrying into
    /// the detached bit. Far above any CPU count: a reader holds at most one count.
    /// </summary>
    private const int MaxReaders = ReaderMask - 1;

    /// <summary>
    /// Per-VMA lock, read side (<c>vma_start_read</c>): a CAS loop on the reader word, refusing a detached VMA, then a
    /// recheck of the writer's mark.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The reader word, alone on its cache line:
    /// <code>
    ///  31  30  29                          0
    /// +---+---+-----------------------------+
    /// | 0 | D |   readers inside            |   D: detached (MarkDetached), never cleared while the VMA lives
    /// +---+---+-----------------------------+
    /// </code>
    /// As Linux: 6.4–6.14 take <c>down_read_trylock(&amp;vma-&gt;vm_lock-&gt;lock)</c> (a cmpxchg loop that refuses a
    /// writer-held rwsem), 6.15 <c>__refcount_inc_not_zero_limited_acquire(&amp;vma-&gt;vm_refcnt)</c> (a cmpxchg loop
    /// that refuses a detached VMA, whose count is 0, and a count at the limit). Both check
    /// <c>vm_lock_seq == mm_lock_seq</c> (write-locked in the current write section) before and after.
    /// Why a CAS and not a fetch-add: the increment must be conditional. A fetch-add always lands, so a reader would count
    /// itself into a detached VMA (one the writer has stopped waiting on, and that goes back to the slab after the grace
    /// period) and have to back out, and a count at the limit would carry into the detached bit.
    /// </para>
    /// </remarks>
    /// <param name="mmLockSeq">The address space's current lock sequence.</param>
    /// <returns>What the attempt found; <see cref="VmaReadLockResult.Locked"/> obliges a <see cref="ReadUnlock"/>.</returns>
    internal VmaReadLockResult TryReadLock(ref int mmLockSeq)
    {
        // Acquire reads: a VMA marked by the current write section is locked; don't bother bouncing its line.
        VirtualTime.Access(this, LineLockSeq, LineAccess.Load);
        if (Volatile.Read(ref _lockSeq) == Volatile.Read(ref mmLockSeq))
        {
            return VmaReadLockResult.WriteLocked;
        }

        // The read that seeds the CAS is priced with the CAS it feeds (one exclusive fetch of the line, as a lock
        // cmpxchg right after a load of the same line costs on x86); each failed CAS is priced again.
        VirtualTime.Access(this, LineReaders, LineAccess.Rmw);
        int seen = Volatile.Read(ref _readers.Value);
        while (true)
        {
            if ((seen & ReaderDetached) != 0)
            {
                return VmaReadLockResult.Detached; // Linux 6.15: oldcnt == 0, -EAGAIN: the caller looks the address up again.
            }

            if ((seen & ReaderMask) >= MaxReaders)
            {
                return VmaReadLockResult.WriteLocked; // At the limit (6.15's VMA_REF_LIMIT): refuse, as a busy lock.
            }

            // CAS (full fence), the claim and one half of a Dekker pair with WriteLock: our count is published before
            // we re-read the writer's mark below; the writer publishes its mark (Exchange) before it reads our count.
            // One of us sees the other. Acquire is what Linux needs here (_acquire): the VMA's fields read by the fault
            // cannot be read before the count that pins them.
            int previous = Interlocked.CompareExchange(ref _readers.Value, seen + 1, seen);
            if (previous == seen)
            {
                break;
            }

            // Another reader came or went, or the VMA was just marked detached: retry with the value we saw.
            seen = previous;
            VirtualTime.Access(this, LineReaders, LineAccess.Rmw);
        }

        if (Volatile.Read(ref _lockSeq) == Volatile.Read(ref mmLockSeq))
        {
            ReadUnlock(); // A writer marked it between our first check and our CAS: give the count back, fall back.
            return VmaReadLockResult.WriteLocked;
        }

        return VmaReadLockResult.Locked;
    }

    /// <summary>
    /// Releases the per-VMA read lock taken by <see cref="TryReadLock(AddressSpace)"/> (Linux <c>vma_end_read</c>): one
    /// atomic decrement of the reader word, a full fence, so the fault's work is done before a writer sees no reader.
    /// </summary>
    /// <exception cref="SynchronizationLockException">The VMA is not read-locked.</exception>
    public void ReadUnlock()
    {
        // Full fence: the fault's work is done before the writer may see zero readers.
        VirtualTime.Access(this, LineReaders, LineAccess.Rmw);
        int after = Interlocked.Decrement(ref _readers.Value);
        if ((after & ReaderMask) == ReaderMask || after < 0)
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
        Backoff backoff = Backoff.ForLock();
        while ((Volatile.Read(ref _readers.Value) & ReaderMask) != 0)
        {
            // A fault holds this VMA read-locked; it finishes without any lock we hold, so waiting is safe.
            backoff.WaitStep(waiter);
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

/// <summary>What <see cref="Vma.TryReadLock(AddressSpace)"/> found (Linux 6.15 <c>vma_start_read</c>'s three outcomes).</summary>
public enum VmaReadLockResult
{
    /// <summary>Read-locked: the caller must call <see cref="Vma.ReadUnlock"/>.</summary>
    Locked,

    /// <summary>A writer marked the VMA in its current write section (or the count is at its limit): fall back.</summary>
    WriteLocked,

    /// <summary>The VMA was removed from the index (Linux 6.15 <c>-EAGAIN</c>): look the address up again.</summary>
    Detached,
}
