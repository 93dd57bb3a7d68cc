using System.Runtime.CompilerServices;

namespace SpecVm.Sync;

/// <summary>A sequence count (Linux <c>seqcount_t</c>): lets readers detect that a writer changed what they read.</summary>
/// <remarks>
/// <para>
/// Writers are serialized by some other lock (for a VMA, the mmap lock held for write). A writer makes the count odd
/// (<see cref="WriteBegin"/>), changes the protected data, and makes it even again (<see cref="WriteEnd"/>). A reader
/// takes the count (<see cref="TryReadBegin"/>; an odd count means a writer is inside, and the reader must not go
/// on), reads the data, and calls <see cref="ReadRetry"/>: if the count moved, everything read may be torn and must
/// be thrown away.
/// </para>
/// <para>
/// Fences follow Boehm, "Can seqlocks get along with programming language memory models?" (MSPC 2012): the first
/// read of the count needs acquire semantics (so data reads cannot move above it), and the re-read needs an acquire
/// <em>fence</em> before it (so data reads cannot move below it). .NET has no acquire-only fence, so the reader uses
/// a full fence there (<see cref="Interlocked.MemoryBarrier"/>); on x86 that is one locked instruction.
/// </para>
/// <para>
/// Not copyable, so not public. A mutable struct, so that each VMA carries its count inline (no extra object, no
/// pointer chase on the speculative fault path; the VMA layout test pins where it sits). A copy would be a second
/// count that no writer ever bumps: a reader validating against it would accept torn data, silently. C# cannot forbid
/// copies of a struct embedded in a class or struct (a <c>ref struct</c> cannot be such a field), so the type is
/// internal — users never need it; the library reaches each count through a field or a <c>ref</c> (as
/// <c>Vma.Seq</c> returns one), never by value, and the copy-guard test over the library's source
/// (test/SpecVm.Tests/Sync/SyncCopyGuardTests.cs) fails on a local, parameter, return value or property of this
/// type held by value.
/// </para>
/// </remarks>
internal struct SeqCount
{
    private int _sequence;

    /// <summary>The raw count, read with acquire semantics; odd while a writer is inside.</summary>
    public readonly int Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(in _sequence);
    }

    /// <summary>Starts a read section. Spins while a writer is inside and returns an even count.</summary>
    /// <param name="waiter">Served while spinning; may be null.</param>
    public readonly int ReadBegin(ISpinWaiter? waiter = null)
    {
        // Acquire: data reads after this cannot be hoisted above it (Boehm's first requirement).
        int start = Volatile.Read(in _sequence);
        return (start & 1) == 0 ? start : ReadBeginSlow(waiter);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private readonly int ReadBeginSlow(ISpinWaiter? waiter)
    {
        Backoff backoff = Backoff.ForLock();
        while (true)
        {
            // Odd: a writer is between WriteBegin and WriteEnd; whatever we read now could be half-written. Wait.
            backoff.WaitStep(waiter);

            // Acquire, as above.
            int start = Volatile.Read(in _sequence);
            if ((start & 1) == 0)
            {
                return start;
            }
        }
    }

    /// <summary>Starts a read section without waiting: false (and no read may proceed) if a writer is inside.</summary>
    /// <param name="start">The even count to pass to <see cref="ReadRetry"/>.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool TryReadBegin(out int start)
    {
        // Acquire: data reads after this cannot be hoisted above it (Boehm's first requirement).
        start = Volatile.Read(in _sequence);
        return (start & 1) == 0;
    }

    /// <summary>Ends a read section: true if a writer intervened and what was read must be discarded.</summary>
    /// <param name="start">The count returned by <see cref="ReadBegin"/> or <see cref="TryReadBegin"/>.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool ReadRetry(int start)
    {
        // Full fence standing in for an acquire fence (Boehm's second requirement): the data reads above must be
        // complete before the count is re-read. Without it the CPU/JIT may satisfy a data read after this re-read,
        // so a reader could see an unchanged count yet return a value a writer was halfway through changing.
        Interlocked.MemoryBarrier();
        return Volatile.Read(in _sequence) != start;
    }

    /// <summary>
    /// <see cref="ReadRetry"/> for a caller that has just executed a full fence of its own after its data reads — for
    /// example a successful compare-and-swap taking a lock, as the speculative fault's PTL trylock is. That fence already
    /// orders the data reads before the re-read (Boehm's second requirement), so this skips the second one.
    /// </summary>
    /// <param name="start">The count returned by <see cref="ReadBegin"/> or <see cref="TryReadBegin"/>.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool ReadRetryAfterFence(int start) => Volatile.Read(in _sequence) != start;

    /// <summary>Enters a write section (count becomes odd). Writers must be serialized by the caller.</summary>
    public void WriteBegin()
    {
        // Interlocked (a full fence): the odd count must be visible before any of the writer's data stores; a
        // release-only store would let later data stores move above it, and a reader could then read new data
        // under an even count that it sees unchanged at its recheck.
        int now = Interlocked.Increment(ref _sequence);
        if ((now & 1) == 0)
        {
            Interlocked.Decrement(ref _sequence);
            throw new SynchronizationLockException("SeqCount.WriteBegin called while a write section is already open (writers must be serialized).");
        }
    }

    /// <summary>Leaves a write section (count becomes even).</summary>
    public void WriteEnd()
    {
        int current = _sequence;
        if ((current & 1) == 0)
        {
            throw new SynchronizationLockException("SeqCount.WriteEnd called without a matching WriteBegin.");
        }

        // Release: every data store of the write section is visible before the even count that closes it.
        Volatile.Write(ref _sequence, current + 1);
    }
}
