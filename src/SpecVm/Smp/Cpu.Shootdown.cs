using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using SpecVm.Sync;

namespace SpecVm.Smp;

/// <summary>The TLB side of a CPU: loading an address space, serving flush IPIs, and initiating shootdowns.</summary>
public sealed unsafe partial class Cpu
{
    private TlbContext? _loaded;
    private long _loadedGeneration;
    private readonly FlushRequest _request;

    /// <summary>The address space this CPU has loaded (its CR3), or null.</summary>
    internal TlbContext? Loaded => _loaded;

    /// <summary>The TLB generation of <see cref="Loaded"/> this CPU has flushed up to (checkers; racy unless the CPU is quiet).</summary>
    internal long LoadedGeneration => Volatile.Read(ref _loadedGeneration);

    /// <summary>Loads <paramref name="context"/> (a context switch): joins its CPU mask and starts with a clean TLB.</summary>
    /// <param name="context">The address space's TLB context.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void SwitchTo(TlbContext context)
    {
        if (!ReferenceEquals(_loaded, context))
        {
            SwitchToSlow(context);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SwitchToSlow(TlbContext context)
    {
        _loaded?.RemoveCpu(Id);

        // Or (full fence) before reading the generation: an initiator bumps the generation and then reads the mask.
        // Either it sees our bit and IPIs us, or our walks after this fence see the PTEs it cleared before its bump.
        context.AddCpu(Id);
        _loaded = context;
        _loadedGeneration = context.Generation;

        // No PCIDs in this model: a switch starts from an empty TLB (x86 without PCID does the same on CR3 writes).
        _tlb.FlushAll();
        Count(CpuCounter.FullFlushes);
    }

    /// <summary>Leaves the loaded address space (it is being destroyed, or the CPU goes idle for good).</summary>
    internal void SwitchToNone()
    {
        if (_loaded != null)
        {
            _loaded.RemoveCpu(Id);
            _loaded = null;
            _tlb.FlushAll();
        }
    }

    /// <summary>Flushes local translations of [<paramref name="start"/>, <paramref name="end"/>) in the loaded context.</summary>
    /// <param name="start">Start address (page aligned).</param>
    /// <param name="end">End address (page aligned, exclusive).</param>
    internal void FlushLocal(ulong start, ulong end)
    {
        if (_tlb.FlushRange(start >> 12, end >> 12))
        {
            Count(CpuCounter.FullFlushes);
        }
        else
        {
            Count(CpuCounter.PagesFlushed, (long)((end - start) >> 12));
        }
    }

    /// <summary>
    /// A TLB shootdown (<c>flush_tlb_mm_range</c>): bumps the context's TLB generation, flushes locally, sends flush
    /// IPIs to every non-lazy CPU in the context's mask and waits until each has acknowledged (or gone lazy). When it
    /// returns no CPU can use a translation of the range that existed before the call; the caller may then free the
    /// frames and page tables it unmapped.
    /// </summary>
    /// <param name="context">The address space's TLB context.</param>
    /// <param name="start">Start address (page aligned).</param>
    /// <param name="end">End address (page aligned, exclusive); ulong.MaxValue flushes everything.</param>
    internal void Shootdown(TlbContext context, ulong start, ulong end) => Shootdown(context, start, end, ulong.MaxValue);

    /// <summary>
    /// A targeted shootdown: as <see cref="Shootdown(TlbContext, ulong, ulong)"/>, but only the CPUs in
    /// <paramref name="mayCache"/> (and in the context's CPU mask) are interrupted. The caller vouches that no other CPU
    /// can hold a translation of the range (see <c>AddressSpaceOptions.TargetedShootdowns</c>).
    /// </summary>
    /// <param name="context">The address space's TLB context.</param>
    /// <param name="start">Start address (page aligned).</param>
    /// <param name="end">End address (page aligned, exclusive); ulong.MaxValue flushes everything.</param>
    /// <param name="mayCache">Bit mask of the CPUs that may cache a translation of the range.</param>
    internal void Shootdown(TlbContext context, ulong start, ulong end, ulong mayCache)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_irqDepth != 0)
        {
            // smp_call_function_many() WARNs on this: two CPUs shooting each other down with irqs off would deadlock.
            throw new InvalidOperationException($"CPU {Id}: TLB shootdown with interrupts disabled.");
        }

        Count(CpuCounter.Shootdowns);

        // Full fence (Interlocked): the caller's PTE changes are visible before the new generation, and the
        // generation is visible before we read the mask and the lazy flags below (Dekker with SwitchTo/FinishBlock).
        VirtualTime.Access(context, 0, LineAccess.Rmw);
        long generation = context.NextGeneration();

        if (ReferenceEquals(_loaded, context))
        {
            if (_loadedGeneration == generation - 1)
            {
                FlushLocal(start, end);
            }
            else
            {
                _tlb.FlushAll();
                Count(CpuCounter.FullFlushes);
            }

            _loadedGeneration = generation;
        }

        // Publish the request for targets' partial flush. The seqcount lets a target that reads it while we reuse it
        // (a stale pending bit served late) notice and fall back to a full flush.
        _request.Seq.WriteBegin();
        _request.Context = context;
        _request.Start = start;
        _request.End = end;
        _request.Generation = generation;
        _request.Seq.WriteEnd();

        ulong loaded = context.CpuMask & ~(1UL << Id);
        ulong mask = loaded & mayCache;
        if (mask != loaded)
        {
            Count(CpuCounter.TargetedIpisAvoided, BitOperations.PopCount(loaded & ~mask));
        }

        ulong targets = 0;
        ulong myBit = 1UL << Id;
        SimContext? sim = VirtualTime.Current;
        Cpu[] cpus = _machine.CpuArray;
        while (mask != 0)
        {
            int t = BitOperations.TrailingZeroCount(mask);
            mask &= mask - 1;
            Cpu target = cpus[t];
            // Acquire read after the generation bump's full fence: the Dekker pair with FinishBlock (see above).
            if (Volatile.Read(ref target._shared.Lazy) != 0 || !WaitForEarlierPost(target, myBit))
            {
                Count(CpuCounter.LazyTargetsSkipped);
                continue;
            }

            // Or (full fence): posts the IPI after the request above is written; the target reads the request after
            // it sees our bit. Our bit cleared again is the target's acknowledgement.
            Interlocked.Or(ref target._shared.Pending, myBit);
            sim?.SendIpi(t);
            targets |= 1UL << t;
        }

        Count(CpuCounter.IpisSent, BitOperations.PopCount(targets));

        // Wait for every ack, serving IPIs sent to us meanwhile (two CPUs shooting each other down both finish), by
        // the library's spin policy (Backoff): with more CPUs than cores a target may share our core, and spinning would
        // keep it off the core for a whole time slice (milliseconds), so we yield after a short phase (a real CPU never
        // needs to); with a core each we still yield after a long one, for targets the host has preempted.
        Backoff backoff = Backoff.ForLock(timeShared: _machine.TimeShared);
        long waitStart = 0;

        // The ack-wait histogram: the clock is read only when some target was interrupted (a shootdown with no
        // targets waits for nothing and records nothing).
        bool ackWait = targets != 0;
        long ackStart = ackWait ? VirtualTime.Timestamp() : 0;
        while (targets != 0)
        {
            ulong waiting = targets;
            while (waiting != 0)
            {
                int t = BitOperations.TrailingZeroCount(waiting);
                waiting &= waiting - 1;
                Cpu target = cpus[t];

                // Acquire reads: the target clears our bit only after its flush; a target that went lazy will catch
                // up through the generation when it wakes, before it touches memory again. (Our bit may then stay
                // set while it sleeps: see WaitForEarlierPost.)
                if ((Volatile.Read(ref target._shared.Pending) & myBit) == 0 || Volatile.Read(ref target._shared.Lazy) != 0)
                {
                    targets &= ~(1UL << t);
                }
            }

            if (targets != 0 && sim != null)
            {
                sim.Relax(); // Virtual time: park until a target acks (or a poll interval passes), serving IPIs.
            }
            else if (targets != 0)
            {
                if (backoff.SpinOrYield(this))
                {
                    CheckAckWatchdog(targets, ref waitStart);
                }
            }
        }

        if (ackWait)
        {
            WaitHistogram.Record(this, WaitKind.ShootdownAck, Math.Max(1, VirtualTime.Timestamp() - ackStart));
        }
    }

    /// <summary>
    /// The ack watchdog, checked between yields: a shootdown that waited longer than twice the machine's watchdog
    /// timeout for acks records a violation naming the silent CPUs (both builds; a target spinning with interrupts disabled
    /// is then usually caught by its own hard-lockup watchdog), and in Debug builds throws
    /// <see cref="ShootdownTimeoutException"/>. Release builds keep waiting: returning early would let the caller
    /// free frames that a silent CPU may still reach through its TLB.
    /// </summary>
    private void CheckAckWatchdog(ulong targets, ref long waitStart)
    {
        long now = Stopwatch.GetTimestamp();
        if (waitStart == 0)
        {
            waitStart = now;
            return;
        }

        // Twice the watchdog timeout: a target spinning with interrupts off is caught first by its own hard-lockup
        // watchdog (one timeout), which breaks the deadlock; this one reports targets that stay silent beyond that.
        if (waitStart < 0 || now - waitStart <= 2 * _watchdogTicks)
        {
            return;
        }

        TimeSpan waited = Stopwatch.GetElapsedTime(waitStart, now);
        waitStart = -1; // Report once per shootdown.
        string silent = DescribeCpus(targets);
        _machine.ReportViolation($"CPU {Id}: a TLB shootdown waited {waited.TotalSeconds:F1} s for acknowledgements from {silent} (spinning with interrupts disabled, or its thread stopped by the host).");
#if DEBUG
        throw new ShootdownTimeoutException(Id, waited, silent);
#endif
    }

    /// <summary>
    /// Before posting to an awake <paramref name="target"/>, waits until our post from an earlier shootdown is no longer
    /// pending there; false if the target went lazy meanwhile (skip it: it catches up on wake).
    /// </summary>
    /// <remarks>
    /// A target acknowledges by clearing the bits it read at the start of its serve. A post of ours can outlive its
    /// shootdown: the target read its inbox while going lazy just before our post landed, and we stopped waiting
    /// because it was lazy. If we posted again into that still-set bit, the two posts would merge, and a serve that
    /// read the old bit and the generation before our new bump would clear the merged bit without the new flush: the
    /// new shootdown would return with a stale translation still cached. Only we set our bit and only the target
    /// clears it, so once we have seen it clear our next post is a fresh one that no serve in progress has read.
    /// </remarks>
    private bool WaitForEarlierPost(Cpu target, ulong myBit)
    {
        // The library's spin policy (Backoff), yielding between phases: a target thread the host has preempted cannot
        // serve until it runs again, and on a time-shared host our spinning may be what keeps it off its core.
        Backoff backoff = Backoff.ForLock(timeShared: _machine.TimeShared);

        // Acquire reads: the target's flush for the old post is complete when we see the bit clear.
        while ((Volatile.Read(ref target._shared.Pending) & myBit) != 0)
        {
            if (Volatile.Read(ref target._shared.Lazy) != 0)
            {
                return false;
            }

            // The target is awake and serves at its next interrupt point; serve ours meanwhile (no deadlock when two
            // CPUs shoot each other down).
            if (VirtualTime.Current is { } sim)
            {
                sim.Relax();
                continue;
            }

            backoff.SpinOrYield(this);
        }

        return true;
    }

    /// <summary>"CPU 1, CPU 3" for a mask (its own method: a lambda capturing the mask would allocate its closure on
    /// every call of the caller, on the shootdown's wait path, even when no report is made).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static string DescribeCpus(ulong mask) =>
        string.Join(", ", Enumerable.Range(0, 64).Where(c => (mask & (1UL << c)) != 0).Select(c => $"CPU {c}"));

    /// <summary>Serves every pending flush IPI now (interrupt context).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ServeIpis()
    {
        ulong pending = Volatile.Read(ref _shared.Pending);
        if (pending == 0)
        {
            return;
        }

        // Virtual time: the interrupt arrives (the clock moves to its delivery) and its handler is charged; the senders
        // are told of the ack below.
        SimContext? sim = VirtualTime.Current;
        sim?.ServeIpis(pending);

        TlbContext? context = _loaded;
        if (context != null)
        {
            long current = context.Generation;
            if (_loadedGeneration < current)
            {
                bool partial = false;
                if (BitOperations.PopCount(pending) == 1 && _loadedGeneration == current - 1)
                {
                    // Exactly one request and it is the next generation: flush just its range if we can read it whole.
                    FlushRequest request = _machine.CpuArray[BitOperations.TrailingZeroCount(pending)]._request;
                    if (request.Seq.TryReadBegin(out int seq))
                    {
                        TlbContext? rc = request.Context;
                        ulong start = request.Start;
                        ulong end = request.End;
                        long rg = request.Generation;
                        if (!request.Seq.ReadRetry(seq) && ReferenceEquals(rc, context) && rg == current && end != ulong.MaxValue)
                        {
                            FlushLocal(start, end);
                            partial = true;
                        }
                    }
                }

                if (!partial)
                {
                    _tlb.FlushAll();
                    Count(CpuCounter.FullFlushes);
                }

                _loadedGeneration = current;
            }
        }

        Count(CpuCounter.IpisServed, BitOperations.PopCount(pending));

        // And (full fence): the acknowledgement. Our flush above is complete before any initiator sees its bit clear;
        // only the bits we saw are cleared, so a post that arrived during the flush is served at the next point (an
        // initiator never posts into a bit of its that is still set: see WaitForEarlierPost).
        Interlocked.And(ref _shared.Pending, ~pending);
    }

    /// <summary>After sleeping: if the loaded context's generation moved past ours, flush everything.</summary>
    private void CatchUpTlb()
    {
        TlbContext? context = _loaded;
        if (context != null && _loadedGeneration < context.Generation)
        {
            _loadedGeneration = context.Generation;
            _tlb.FlushAll();
            Count(CpuCounter.FullFlushes);
            Count(CpuCounter.LazyCatchUps);
        }
    }

    /// <summary>The shootdown this CPU is initiating, read by its targets.</summary>
    private sealed class FlushRequest
    {
        public SeqCount Seq;
        public TlbContext? Context;
        public ulong Start;
        public ulong End;
        public long Generation;
    }
}
