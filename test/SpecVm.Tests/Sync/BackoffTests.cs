using SpecVm.Sync;

namespace SpecVm.Tests.Sync;

/// <summary>The library's one spin-wait policy: the phase lengths, the escalation points, the waiter served each spin.</summary>
public sealed class BackoffTests
{
    [Fact]
    public void ASpinPhaseServesTheWaiterEachStepThenAsksTheCallerToEscalate()
    {
        var waiter = new CountingSpinWaiter();
        var backoff = new Backoff(5);
        for (int i = 0; i < 5; i++)
        {
            Assert.True(backoff.Spin(waiter));
        }

        Assert.False(backoff.Spin(waiter)); // Spent: no sixth spin, the caller sleeps.
        Assert.Equal(5, waiter.Relaxes);
        Assert.Equal(0, backoff.Escalations);

        backoff.Escalated();
        Assert.Equal(1, backoff.Escalations);
        Assert.True(backoff.Spin(waiter)); // A new phase after the sleep.
        Assert.Equal(6, waiter.Relaxes);
    }

    [Fact]
    public void SpinOrYieldYieldsOnceAtTheEndOfEachPhaseAndSaysSo()
    {
        var waiter = new CountingSpinWaiter();
        var backoff = new Backoff(3);
        var yielded = new List<int>();
        for (int step = 1; step <= 12; step++)
        {
            if (backoff.SpinOrYield(waiter))
            {
                yielded.Add(step);
            }
        }

        // Three spins, then the yield (a step of its own, the watchdog's moment), three spins, …
        Assert.Equal([4, 8, 12], yielded);
        Assert.Equal(9, waiter.Relaxes);
        Assert.Equal(3, backoff.Escalations);
    }

    [Fact]
    public void StepCountsThePhaseWithoutSpinning()
    {
        var backoff = new Backoff(2);
        Assert.True(backoff.Step());
        Assert.True(backoff.Step());
        Assert.False(backoff.Step());
    }

    [Fact]
    public void LockWaitsUseTheLongPhaseAndTheShortOneWhenCpusShareCores()
    {
        Assert.Equal(Backoff.SpinSteps, CountSpins(Backoff.ForLock()));
        Assert.Equal(Backoff.TimeSharedSpinSteps, CountSpins(Backoff.ForLock(timeShared: true)));
        Assert.True(Backoff.TimeSharedSpinSteps < Backoff.SpinSteps);
        Assert.Equal(RwSemaphore.SpinIterations, Backoff.SpinSteps); // The mmap lock sleeps after the same phase.
    }

    private static int CountSpins(Backoff backoff)
    {
        int n = 0;
        while (backoff.Step())
        {
            n++;
        }

        return n;
    }
}
