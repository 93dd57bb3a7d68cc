using System.Diagnostics;
using System.Globalization;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Simulation;

/// <summary>
/// One CPU of a <see cref="Simulator"/>: its virtual clock, its scheduling state and the seam's implementation for
/// the thread that runs it. Everything here is touched only by the one thread the simulator lets run (the gate
/// hand-off is the fence between turns).
/// </summary>
internal sealed unsafe class SimCpu : SimContext
{
    private static readonly double TicksPerPs = Stopwatch.Frequency / 1e12;

    private readonly Simulator _sim;
    private readonly long* _counters;
    private readonly long[] _seen = new long[6];
    private readonly Line _doorbell = new();
    private long _spinStepPs;
    private long _spinSince = -1;

    internal SimCpu(Simulator sim, Cpu cpu)
    {
        _sim = sim;
        Cpu = cpu;
        Id = cpu.Id;
        _counters = cpu.Counters;
    }

    public Cpu Cpu { get; }

    public int Id { get; }

    /// <summary>The virtual clock, in picoseconds.</summary>
    public long Now { get; set; }

    public SimState State { get; set; }

    /// <summary>When parked: the deadline (poll step, timed sleep) or long.MaxValue.</summary>
    public long Deadline { get; private set; } = long.MaxValue;

    /// <summary>When parked: true for a sleeping (lazy) wait, whose wake-up costs the wake latency.</summary>
    public bool ParkSleeping { get; private set; }

    /// <summary>The earliest arrival of an IPI not yet served, or long.MaxValue.</summary>
    public long IpiArrival { get; private set; } = long.MaxValue;

    /// <summary>Host hand-off gate: set when this CPU may run.</summary>
    public ManualResetEventSlim Gate { get; } = new(false, 1);

    private Line? _parkedOn;
    private string _parkWhat = string.Empty;

    /// <inheritdoc/>
    public override long Timestamp => (long)(Now * TicksPerPs);

    /// <inheritdoc/>
    public override long ChargedTimestamp()
    {
        ChargeLocal();
        return Timestamp;
    }

    public void Enter()
    {
        for (int i = 0; i < _seen.Length; i++)
        {
            _seen[i] = _counters[(int)Charged[i]];
        }

        VirtualTime.Bind(this);
    }

    public void Leave() => VirtualTime.Bind(null);

    /// <summary>Charges the local work this CPU's counters show since the last event.</summary>
    public void ChargeLocal()
    {
        CostModel m = _sim.Model;
        double ns = 0;
        for (int i = 0; i < _seen.Length; i++)
        {
            long v = _counters[(int)Charged[i]];
            long d = v - _seen[i];
            if (d != 0)
            {
                _seen[i] = v;
                ns += d * i switch
                {
                    0 => m.TlbHitNs,
                    1 => m.TlbMissNs,
                    2 => m.FaultNs,
                    3 => m.VmaEditNs,
                    4 => m.FlushPageNs,
                    _ => m.FullFlushNs,
                };
            }
        }

        Now += (long)(ns * Simulator.PsPerNs);
    }

    /// <inheritdoc/>
    public override void Access(object? owner, nint slot, LineAccess kind)
    {
        ChargeLocal();
        _sim.CountEvent();
        _spinSince = -1;
        Line line = _sim.LineOf(owner, slot);

        // An ordering point: the access happens at our clock only once no other CPU is more than a quantum behind
        // (private lines too: whether a line is private is known only in host order).
        _sim.Schedule(this);

        Now += _sim.Price(this, line, kind);
        if (kind != LineAccess.Load)
        {
            _sim.WakeAll(line, this, Now);
        }
    }

    /// <inheritdoc/>
    public override void WaitOn(object? owner, nint slot, bool sleep)
    {
        ChargeLocal();
        _sim.CountEvent();
        Line line = _sim.LineOf(owner, slot);
        if (sleep)
        {
            Now += (long)(_sim.Model.SleepNs * Simulator.PsPerNs);
        }

        Park(line, long.MaxValue, sleep, sleep ? "sleeping on a lock" : "spinning on a lock");
    }

    /// <inheritdoc/>
    public override void Relax()
    {
        ChargeLocal();
        _sim.CountEvent();
        CostModel m = _sim.Model;
        if (_spinSince < 0)
        {
            _spinSince = Now;
            _spinStepPs = (long)(m.SpinStepNs * Simulator.PsPerNs);
        }
        else
        {
            _spinStepPs = Math.Min(_spinStepPs * 2, (long)(m.SpinMaxStepNs * Simulator.PsPerNs));
        }

        if (Now - _spinSince > HangPs)
        {
            _sim.Fail(this, string.Create(CultureInfo.InvariantCulture, $"CPU {Id} has spun for {(Now - _spinSince) / 1e6:F0} µs of virtual time (a livelock or a deadlock with interrupts disabled)"));
        }

        Park(_doorbell, Now + _spinStepPs, sleeping: false, Cpu.IrqsDisabled ? "spinning with interrupts disabled" : "spinning");
    }

    /// <inheritdoc/>
    public override void Sleep(TimeSpan duration)
    {
        ChargeLocal();
        _sim.CountEvent();
        _spinSince = -1;
        Park(null, Now + (long)(duration.Ticks * 100_000L), sleeping: true, "sleeping");
    }

    /// <inheritdoc/>
    public override void Work(SimWork work)
    {
        ChargeLocal();
        _sim.CountEvent();
        CostModel m = _sim.Model;
        Now += work switch
        {
            SimWork.PageZero => _sim.PricePageKernel(this, m.PageZeroNs),
            SimWork.PageCopy => _sim.PricePageKernel(this, m.PageCopyNs),
            _ => (long)(m.ZapPageNs * Simulator.PsPerNs),
        };
    }

    /// <inheritdoc/>
    public override void SendIpi(int target)
    {
        CostModel m = _sim.Model;
        _sim.CountEvent();
        Now += (long)((_ipisThisRound++ == 0 ? m.IpiSendNs : m.IpiPerTargetNs) * Simulator.PsPerNs);
        _sim.Deliver(target, Now + (long)(m.IpiDeliveryNs * Simulator.PsPerNs));
    }

    private int _ipisThisRound;

    /// <summary>An IPI reaches this CPU at <paramref name="at"/>: a CPU parked with interrupts on wakes for it.</summary>
    public void Deliver(long at)
    {
        IpiArrival = Math.Min(IpiArrival, at);
        if (State == SimState.Parked && !Cpu.IrqsDisabled && !Cpu.IsLazy)
        {
            Wake(at);
        }
    }

    /// <inheritdoc/>
    public override void ServeIpis(ulong senders)
    {
        ChargeLocal();
        _sim.CountEvent();
        if (IpiArrival != long.MaxValue)
        {
            Now = Math.Max(Now, IpiArrival);
        }

        IpiArrival = long.MaxValue;
        Now += (long)(_sim.Model.IpiHandlerNs * Simulator.PsPerNs);

        // The acks: each sender, polling its targets' inboxes, sees ours after one line transfer.
        while (senders != 0)
        {
            int s = System.Numerics.BitOperations.TrailingZeroCount(senders);
            senders &= senders - 1;
            _sim.RingDoorbell(s, this);
        }
    }

    /// <summary>Wakes this parked CPU at <paramref name="at"/> (or later, if its clock is ahead).</summary>
    public void Wake(long at)
    {
        if (State != SimState.Parked)
        {
            return;
        }

        _parkedOn?.Waiters?.Remove(this);
        _parkedOn = null;
        Now = Math.Max(Now, at);
        Deadline = long.MaxValue;
        State = SimState.Runnable;
        _sim.NoteRunnable(this);
    }

    /// <summary>This CPU's doorbell line (rung by acks).</summary>
    public Line Doorbell => _doorbell;

    public string Describe() => string.Create(
        CultureInfo.InvariantCulture,
        $"{State}{(State == SimState.Parked ? " " + _parkWhat : string.Empty)} at {Now / 1e3:F0} ns{(Cpu.IrqsDisabled ? ", irqs off" : string.Empty)}{(IpiArrival != long.MaxValue ? ", IPI pending" : string.Empty)}");

    /// <summary>Parks until <paramref name="line"/> is written, an IPI arrives (interrupts on), or <paramref name="deadline"/>.</summary>
    private void Park(Line? line, long deadline, bool sleeping, string what)
    {
        _ipisThisRound = 0;
        if (!Cpu.IrqsDisabled && IpiArrival != long.MaxValue && !sleeping)
        {
            // An IPI is already on its way: take it instead of waiting past it.
            Now = Math.Max(Now, IpiArrival);
            Cpu.Poll();
            _sim.Schedule(this);
            return;
        }

        State = SimState.Parked;
        Deadline = deadline;
        ParkSleeping = sleeping;
        _parkWhat = what;
        _parkedOn = line;
        if (line != null)
        {
            (line.Waiters ??= []).Add(this);
        }

        _sim.Schedule(this);

        // Running again (woken, or the deadline passed): serve what arrived meanwhile, if interrupts allow.
        if (IpiArrival != long.MaxValue && !Cpu.IrqsDisabled)
        {
            Cpu.Poll();
        }
    }

    /// <summary>The counters whose deltas price local work, in <see cref="ChargeLocal"/>'s order.</summary>
    private static readonly CpuCounter[] Charged =
    [
        CpuCounter.TlbHits, CpuCounter.TlbMisses, CpuCounter.Faults, CpuCounter.MmapWriteAcquisitions,
        CpuCounter.PagesFlushed, CpuCounter.FullFlushes,
    ];

    /// <summary>Continuous spinning longer than this is reported as a livelock (20 ms of virtual time).</summary>
    private const long HangPs = 20_000_000_000;
}

/// <summary>A simulated CPU's scheduling state.</summary>
internal enum SimState
{
    /// <summary>Not entered yet.</summary>
    Idle,

    /// <summary>Running or ready to run.</summary>
    Runnable,

    /// <summary>Waiting for a line, an IPI or a deadline.</summary>
    Parked,

    /// <summary>Left the simulation.</summary>
    Done,
}
