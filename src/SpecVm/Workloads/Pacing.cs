using System.Diagnostics;
using SpecVm.Sync;

namespace SpecVm.Workloads;

/// <summary>Rate limiting for background tasks: is the next operation due?</summary>
internal static class Pacing
{
    /// <summary>The most operations a task that fell behind (descheduled) makes up in one burst.</summary>
    public const long MaxBacklog = 8;

    /// <summary>True when <paramref name="slot"/> (Start = first call, Count = operations done) owes an operation at <paramref name="perSecond"/>.</summary>
    public static bool Due(ref TaskSlot slot, double perSecond)
    {
        long now = VirtualTime.Timestamp(); // The wall clock, or a simulated CPU's virtual clock.
        if (slot.Start == 0)
        {
            slot.Start = now;
        }

        long due = (long)((now - slot.Start) * perSecond / Stopwatch.Frequency);
        if (due - slot.Count > MaxBacklog)
        {
            slot.Count = due - MaxBacklog; // Descheduled for a while: do not make up for it in one long burst.
        }

        return slot.Count < due;
    }
}
