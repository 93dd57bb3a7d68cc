namespace SpecVm.Simulation;

/// <summary>One cache line in the directory: its holders (while private), its history (once shared), its waiters and its busy calendar.</summary>
internal sealed class Line
{
    public int Owner = -1;
    public ulong Sharers;
    public int FirstToucher = -1;
    public long FirstTouch;
    public LineHistory? History;
    public List<SimCpu>? Waiters;
    public Calendar? Busy;

    /// <summary>What the line holds, for the shared-line tally (<see cref="Simulator.LineTally"/>).</summary>
    public string Label = "";

    /// <summary>Accesses priced on this line, by kind.</summary>
    public long Loads, Stores, Rmws;

    /// <summary>The expected number of those accesses that found the line in another CPU's cache (a transfer).</summary>
    public double Transfers;

    /// <summary>True once more than one CPU has touched the line (its accesses are ordering points).</summary>
    public bool Shared => History != null;
}

/// <summary>
/// Which CPUs read and wrote a shared line in each 250 ns window of virtual time (a ring covering 256 µs), and each
/// CPU's last access: enough to tell whether another CPU touched the line between two accesses of one CPU.
/// </summary>
internal sealed class LineHistory
{
    private const int Windows = 1024;
    private const long WindowPs = 250_000;

    private readonly long[] _epoch = new long[Windows];
    private readonly ulong[] _writers = new ulong[Windows];
    private readonly ulong[] _readers = new ulong[Windows];
    private readonly int[] _writes = new int[Windows];
    private readonly int[] _accesses = new int[Windows];

    public LineHistory() => Array.Fill(Last, -1L);

    /// <summary>How far back <see cref="ForeignRate"/> looks: 32 windows, 8 µs.</summary>
    private const int RateWindows = 32;

    /// <summary>
    /// Other CPUs' writes (or, for a store, accesses) per nanosecond in the 8 µs before <paramref name="now"/>, each
    /// window's traffic split evenly among the CPUs that made it.
    /// </summary>
    public double ForeignRate(long now, int cpu, bool anyAccess)
    {
        long w1 = Math.Max(0, now) / WindowPs;
        ulong bit = 1UL << cpu;
        double foreign = 0;
        for (long w = Math.Max(0, w1 - RateWindows + 1); w <= w1; w++)
        {
            int i = (int)(w % Windows);
            if (_epoch[i] != w)
            {
                continue;
            }

            ulong who = anyAccess ? _writers[i] | _readers[i] : _writers[i];
            int n = anyAccess ? _accesses[i] : _writes[i];
            int cpus = System.Numerics.BitOperations.PopCount(who);
            if (n == 0 || cpus == 0)
            {
                continue;
            }

            foreign += (who & bit) != 0 ? n * (cpus - 1) / (double)cpus : n;
        }

        return foreign / (RateWindows * (WindowPs / 1000.0));
    }

    /// <summary>Each CPU's last access, in ps (-1: never).</summary>
    public long[] Last { get; } = new long[64];

    /// <summary>The CPUs that touched the line most recently (the latest window written).</summary>
    public ulong Recent { get; private set; }

    public void Record(long at, int cpu, bool write)
    {
        long w = Math.Max(0, at) / WindowPs;
        int i = (int)(w % Windows);
        if (_epoch[i] != w)
        {
            _epoch[i] = w;
            _writers[i] = 0;
            _readers[i] = 0;
            _writes[i] = 0;
            _accesses[i] = 0;
        }

        ulong bit = 1UL << cpu;
        _accesses[i]++;
        if (write)
        {
            _writers[i] |= bit;
            _writes[i]++;
        }
        else
        {
            _readers[i] |= bit;
        }

        Recent = _writers[i] | _readers[i];
        Last[cpu] = Math.Max(Last[cpu], at);
    }

    /// <summary>The CPUs that wrote (or, with <paramref name="anyAccess"/>, touched) the line in (<paramref name="from"/>, <paramref name="to"/>].</summary>
    public ulong TouchedBetween(long from, long to, bool anyAccess)
    {
        if (from < 0 || to < from)
        {
            return 0;
        }

        long w0 = from / WindowPs, w1 = to / WindowPs;
        if (w1 - w0 >= Windows)
        {
            w0 = w1 - Windows + 1; // Older windows are gone: look at what the ring still holds.
        }

        ulong seen = 0;
        for (long w = w0; w <= w1; w++)
        {
            int i = (int)(w % Windows);
            if (_epoch[i] == w)
            {
                seen |= _writers[i] | (anyAccess ? _readers[i] : 0);
            }
        }

        return seen;
    }
}

/// <summary>
/// Occupancy of one serialising resource (a line's read-modify-writes, a socket's memory bandwidth) in windows of
/// virtual time. A reservation fills the window it starts in and spills into the next ones when that is full, so
/// CPUs that run a quantum out of order still queue by their virtual times: throughput saturates at one window's
/// capacity per window whatever the order the reservations arrive in.
/// </summary>
internal sealed class Calendar
{
    private const int Windows = 256;
    private const long WindowPs = 1_000_000; // 1 µs

    private readonly long[] _epoch = new long[Windows];
    private readonly long[] _used = new long[Windows];

    /// <summary>Reserves <paramref name="duration"/> ps from <paramref name="at"/>; returns when the work completes.</summary>
    public long Reserve(long at, long duration)
    {
        long w = at / WindowPs;
        long remaining = duration;
        for (int guard = 0; guard < Windows; guard++, w++)
        {
            int i = (int)(w % Windows);
            if (_epoch[i] != w)
            {
                _epoch[i] = w;
                _used[i] = 0;
            }

            long take = Math.Min(WindowPs - _used[i], remaining);
            if (take > 0)
            {
                _used[i] += take;
                remaining -= take;
            }

            if (remaining == 0)
            {
                return Math.Max(at + duration, (w * WindowPs) + _used[i]);
            }
        }

        return at + duration + (Windows * WindowPs); // Beyond the horizon: saturated for its whole length.
    }
}
