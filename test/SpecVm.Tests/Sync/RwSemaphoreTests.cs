using System.Diagnostics;
using SpecVm.Sync;
using Xunit.Abstractions;

namespace SpecVm.Tests.Sync;

[Collection(StressCollection.Name)]
public sealed class RwSemaphoreTests(ITestOutputHelper output)
{
    private const int Seed = 0x5E3A;
    private static readonly double TicksPerMs = Stopwatch.Frequency / 1000.0;

    [Fact]
    public void NeverAWriterWithAReaderNorTwoWriters()
    {
        const int Threads = 4;
        var sem = new RwSemaphore();
        var occupancy = new Occupancy();
        long[] reads = new long[Threads];
        long[] writes = new long[Threads];
        int stop = 0;

        var threads = new TestThread[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int id = t;
            threads[t] = new TestThread($"rwsem stress {id}", () =>
            {
                var rng = new Random(Seed + id);
                ISpinWaiter? waiter = id % 2 == 0 ? null : new CountingSpinWaiter();
                while (Volatile.Read(ref stop) == 0)
                {
                    int dice = rng.Next(16);
                    bool write = dice == 0 ? Enter(sem.WriteLock, waiter) : dice == 1 && sem.TryWriteLock();
                    if (write)
                    {
                        occupancy.EnterWriter();
                        TestThreads.Spin(rng.Next(16));
                        writes[id]++;
                        if (rng.Next(4) == 0)
                        {
                            // downgrade_write: become a reader without letting another writer in.
                            occupancy.WriterBecomesReader();
                            sem.DowngradeWrite();
                            TestThreads.Spin(rng.Next(16));
                            occupancy.LeaveReader();
                            sem.ReadUnlock();
                            reads[id]++;
                        }
                        else
                        {
                            occupancy.LeaveWriter();
                            sem.WriteUnlock();
                        }

                        continue;
                    }

                    bool read = dice == 2 ? sem.TryReadLock() : Enter(sem.ReadLock, waiter);
                    if (read)
                    {
                        occupancy.EnterReader();
                        TestThreads.Spin(rng.Next(32));
                        occupancy.LeaveReader();
                        sem.ReadUnlock();
                        reads[id]++;
                    }
                }
            });
        }

        Thread.Sleep(400);
        Volatile.Write(ref stop, 1);
        foreach (TestThread thread in threads)
        {
            thread.Join();
        }

        long totalReads = reads.Sum();
        long totalWrites = writes.Sum();
        output.WriteLine($"seed 0x{Seed:X}: {Threads} threads, {totalReads} reads, {totalWrites} writes, " +
            $"{sem.ContendedReads} contended reads, {sem.ContendedWrites} contended writes, first violation: {occupancy.FirstViolation ?? "none"}");

        Assert.True(occupancy.Violations == 0, $"{occupancy.Violations} exclusion violations; first: {occupancy.FirstViolation}");
        Assert.Equal(totalWrites, occupancy.PlainWrites); // A plain ++ only writers do: a lost update means two writers.
        Assert.Equal(totalReads, sem.ReadAcquisitions);
        Assert.Equal(totalWrites, sem.WriteAcquisitions);
        Assert.True(totalWrites > 0 && totalReads > 0, "The stress did not exercise both sides.");
        AssertFree(sem);
    }

    [Fact]
    public void WriterGetsInWhileReadersKeepArriving()
    {
        const int Readers = 3;
        const int Rounds = 10;
        var sem = new RwSemaphore();
        long[] acquisitions = new long[Readers];
        int stop = 0;
        int inside = 0;
        var readers = new TestThread[Readers];
        for (int r = 0; r < Readers; r++)
        {
            int id = r;
            readers[r] = new TestThread($"arriving reader {id}", () =>
            {
                var rng = new Random(Seed + id);
                while (Volatile.Read(ref stop) == 0)
                {
                    sem.ReadLock();
                    Interlocked.Increment(ref inside);
                    TestThreads.Spin(rng.Next(50, 200)); // Long read sections, so readers overlap and the count rarely drops to zero.
                    Interlocked.Decrement(ref inside);
                    sem.ReadUnlock();
                    Interlocked.Increment(ref acquisitions[id]);
                }
            });
        }

        var waits = new List<double>();
        try
        {
            Assert.True(TestThreads.SpinUntil(() => Snapshot(acquisitions).All(a => a >= 100), TestThreads.Bound), "Readers did not get going.");
            for (int round = 0; round < Rounds; round++)
            {
                long before = Snapshot(acquisitions).Sum();
                var sw = Stopwatch.StartNew();
                sem.WriteLock();
                int readersInside;
                try
                {
                    waits.Add(sw.Elapsed.TotalMilliseconds);

                    // Readers inside their sections, counted by themselves (ReaderCount is a racy view of the count
                    // word, which includes a reader's optimistic fetch-add before it backs out).
                    readersInside = Volatile.Read(ref inside);
                }
                finally
                {
                    sem.WriteUnlock(); // Released before any assertion, so a failure cannot leave the readers blocked.
                }

                Assert.Equal(0, readersInside);
                Assert.True(sw.Elapsed < TestThreads.Bound, $"The writer needed {sw.Elapsed.TotalMilliseconds:F0} ms to get in past arriving readers.");

                // Readers really keep arriving between the writes (or the test would measure nothing).
                Assert.True(TestThreads.SpinUntil(() => Snapshot(acquisitions).Sum() >= before + Readers, TestThreads.Bound), "Readers stopped arriving.");
            }
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            foreach (TestThread reader in readers)
            {
                reader.Join();
            }
        }

        output.WriteLine($"seed 0x{Seed:X}: writer waits (ms): {string.Join(", ", waits.Select(w => w.ToString("F2")))}; " +
            $"{sem.ReadAcquisitions} reads, {sem.ContendedReads} of them contended");
        Assert.Equal(Rounds, sem.WriteAcquisitions);
        AssertFree(sem);
    }

    [Fact]
    public void TryReadLockFailsWhileAWriterHoldsOrWaits()
    {
        var sem = new RwSemaphore();

        var holder = new ParkedThread("writer holding", () => sem.WriteLock(), () => sem.WriteUnlock());
        Assert.True(sem.IsWriteLocked);
        Assert.False(sem.TryReadLock(), "TryReadLock succeeded while a writer held the lock.");
        Assert.False(sem.TryWriteLock());
        holder.ReleaseAndJoin();

        sem.ReadLock();
        var writer = new TestThread("waiting writer", () =>
        {
            sem.WriteLock();
            sem.WriteUnlock();
        });
        Assert.True(TestThreads.SpinUntil(() => sem.WaitingWriters == 1, TestThreads.Bound), "The writer never started waiting.");
        long readsBefore = sem.ReadAcquisitions;
        Assert.False(sem.TryReadLock(), "TryReadLock succeeded while a writer waited (writer preference).");
        Assert.False(sem.TryWriteLock());
        Assert.Equal(readsBefore, sem.ReadAcquisitions); // A failed try is not an acquisition.
        Assert.Equal(1, sem.ReaderCount);

        sem.ReadUnlock();
        writer.Join();
        Assert.True(sem.TryReadLock());
        sem.ReadUnlock();
        Assert.Equal(readsBefore + 1, sem.ReadAcquisitions);
        AssertFree(sem);
    }

    [Fact]
    public void ReadUnlockWithoutAReaderThrowsAndTheLockStillWorks()
    {
        var sem = new RwSemaphore();
        Assert.Throws<SynchronizationLockException>(sem.ReadUnlock);
        AssertFree(sem);

        sem.ReadLock();
        sem.ReadUnlock();
        Assert.Throws<SynchronizationLockException>(sem.ReadUnlock); // Double exit.
        AssertFree(sem);

        // A stray ReadUnlock while another thread writes must not disturb the writer.
        var holder = new ParkedThread("writer holding", () => sem.WriteLock(), () => sem.WriteUnlock());
        Assert.Throws<SynchronizationLockException>(sem.ReadUnlock);
        Assert.True(sem.IsWriteLocked);
        Assert.Equal(0, sem.ReaderCount);
        holder.ReleaseAndJoin();

        AssertWorksFromAnotherThread(sem);
        AssertFree(sem);
    }

    [Fact]
    public void WriteUnlockWhenNotHeldOrFromAnotherThreadThrowsAndTheLockStillWorks()
    {
        var sem = new RwSemaphore();
        Assert.Throws<SynchronizationLockException>(sem.WriteUnlock);
        AssertFree(sem);

        sem.ReadLock();
        Assert.Throws<SynchronizationLockException>(sem.WriteUnlock); // Held for read, not write.
        Assert.Equal(1, sem.ReaderCount);
        sem.ReadUnlock();

        var holder = new ParkedThread("writer holding", () => sem.WriteLock(), () => sem.WriteUnlock());
        var wrongThread = Assert.Throws<SynchronizationLockException>(sem.WriteUnlock);
        output.WriteLine(wrongThread.Message);
        Assert.True(sem.IsWriteLocked, "WriteUnlock from the wrong thread released the lock.");
        Assert.Throws<SynchronizationLockException>(sem.DowngradeWrite);
        Assert.True(sem.IsWriteLocked);
        holder.ReleaseAndJoin(); // The owner's WriteUnlock still succeeds.

        AssertWorksFromAnotherThread(sem);
        sem.WriteLock();
        sem.WriteUnlock();
        AssertFree(sem);
    }

    [Fact]
    public void CountersMoveAsExpected()
    {
        var sem = new RwSemaphore();

        // Uncontended: acquisitions count, nothing waits.
        sem.ReadLock();
        sem.ReadLock();
        sem.ReadUnlock();
        sem.ReadUnlock();
        Assert.True(sem.TryReadLock());
        sem.ReadUnlock();
        sem.WriteLock();
        sem.WriteUnlock();
        Assert.True(sem.TryWriteLock());
        sem.DowngradeWrite();
        sem.ReadUnlock();
        Assert.Equal(4, sem.ReadAcquisitions); // Two ReadLock, one TryReadLock, one downgrade.
        Assert.Equal(2, sem.WriteAcquisitions);
        Assert.Equal(0, sem.ContendedReads);
        Assert.Equal(0, sem.ContendedWrites);
        Assert.Equal(0, sem.ReadWaitTicks);
        Assert.Equal(0, sem.WriteWaitTicks);

        // A reader that has to wait: the writer holds well past the reader's spin phase.
        const int HoldMs = 20;
        var writer = new ParkedThread("writer holding", () => sem.WriteLock(), () => sem.WriteUnlock());
        long holdBefore = sem.WriteHoldTicks;
        var waiter = new CountingSpinWaiter();
        var reader = new TestThread("waiting reader", () =>
        {
            sem.ReadLock(waiter);
            sem.ReadUnlock();
        });
        Assert.True(waiter.Blocked.Wait(TestThreads.Bound), "The reader never went to sleep.");
        Thread.Sleep(HoldMs);
        writer.ReleaseAndJoin();
        reader.Join();
        Assert.Equal(5, sem.ReadAcquisitions);
        Assert.Equal(3, sem.WriteAcquisitions);
        Assert.Equal(1, sem.ContendedReads);
        Assert.True(sem.ReadWaitTicks >= HoldMs * TicksPerMs, $"ReadWaitTicks {sem.ReadWaitTicks} is less than the {HoldMs} ms the reader waited.");
        Assert.True(sem.WriteHoldTicks - holdBefore >= HoldMs * TicksPerMs, "WriteHoldTicks did not grow by the hold time.");
        Assert.True(waiter.Relaxes >= RwSemaphore.SpinIterations, $"The reader slept after only {waiter.Relaxes} spins.");

        // A writer that has to wait for a reader.
        sem.ReadLock();
        var waitingWriter = new TestThread("waiting writer", () =>
        {
            sem.WriteLock();
            sem.WriteUnlock();
        });
        Assert.True(TestThreads.SpinUntil(() => sem.WaitingWriters == 1, TestThreads.Bound));
        Thread.Sleep(HoldMs);
        sem.ReadUnlock();
        waitingWriter.Join();
        Assert.Equal(4, sem.WriteAcquisitions);
        Assert.Equal(1, sem.ContendedWrites);
        Assert.Equal(1, sem.ContendedReads);
        Assert.True(sem.WriteWaitTicks >= HoldMs * TicksPerMs, $"WriteWaitTicks {sem.WriteWaitTicks} is less than the {HoldMs} ms the writer waited.");
        AssertFree(sem);
    }

    [Fact]
    public void SleepersGetWokenWhenTheLockIsReleased()
    {
        // Each round: force waiters past SpinIterations into sleep, release, and time the wake-up. The monitor wait
        // has a 50 ms backstop, so a lost wake-up shows as ~50 ms in every round; a working one is far below that.
        const int Rounds = 5;
        const double WokenMs = 25;
        var sem = new RwSemaphore();
        var readerRounds = new List<double>();
        var writerRounds = new List<double>();

        for (int round = 0; round < Rounds; round++)
        {
            // Two readers asleep behind a writer.
            sem.WriteLock();
            var waiters = new[] { new CountingSpinWaiter(), new CountingSpinWaiter() };
            long[] acquiredAt = new long[waiters.Length];
            var readers = new TestThread[waiters.Length];
            for (int i = 0; i < readers.Length; i++)
            {
                int id = i;
                readers[i] = new TestThread($"sleeping reader {id}", () =>
                {
                    sem.ReadLock(waiters[id]);
                    acquiredAt[id] = Stopwatch.GetTimestamp();
                    sem.ReadUnlock();
                });
            }

            Assert.True(waiters.All(w => w.Blocked.Wait(TestThreads.Bound)), "A reader never went to sleep.");
            long releasedAt = Stopwatch.GetTimestamp();
            sem.WriteUnlock();
            foreach (TestThread reader in readers)
            {
                reader.Join();
            }

            Assert.All(waiters, w => Assert.Equal(w.Blocks, w.Wakes));
            readerRounds.Add((acquiredAt.Max() - releasedAt) / TicksPerMs);

            // A writer asleep behind a reader.
            sem.ReadLock();
            var writerWaiter = new CountingSpinWaiter();
            long writerAt = 0;
            var writer = new TestThread("sleeping writer", () =>
            {
                sem.WriteLock(writerWaiter);
                writerAt = Stopwatch.GetTimestamp();
                sem.WriteUnlock();
            });
            Assert.True(writerWaiter.Blocked.Wait(TestThreads.Bound), "The writer never went to sleep.");
            releasedAt = Stopwatch.GetTimestamp();
            sem.ReadUnlock();
            writer.Join();
            Assert.Equal(writerWaiter.Blocks, writerWaiter.Wakes);
            writerRounds.Add((writerAt - releasedAt) / TicksPerMs);
        }

        output.WriteLine($"wake-up latency, readers behind a writer (ms): {string.Join(", ", readerRounds.Select(x => x.ToString("F3")))}");
        output.WriteLine($"wake-up latency, writer behind a reader (ms): {string.Join(", ", writerRounds.Select(x => x.ToString("F3")))}");
        Assert.True(readerRounds.Min() < WokenMs, "Sleeping readers were never woken by the release, only by the backstop timeout.");
        Assert.True(writerRounds.Min() < WokenMs, "A sleeping writer was never woken by the release, only by the backstop timeout.");
        Assert.Equal(2 * Rounds, sem.ContendedReads);
        Assert.Equal(Rounds, sem.ContendedWrites);
        AssertFree(sem);
    }

    [Fact]
    public void TimedReadEntryIsFreeUncontendedAndReportsTheWaitBehindAWriter()
    {
        var sem = new RwSemaphore();
        Assert.Equal(0, sem.ReadLockTimed(null)); // Fast path: one fetch-add, no clock read.
        sem.ReadUnlock();

        sem.WriteLock();
        long waited = -1;
        var reader = new TestThread("timed reader", () =>
        {
            waited = sem.ReadLockTimed(null);
            sem.ReadUnlock();
        });
        Thread.Sleep(50);
        sem.WriteUnlock();
        reader.Join();
        Assert.True(waited >= Stopwatch.Frequency / 100, $"The reader waited about 50 ms behind the writer but reported {waited} ticks.");
        Assert.Equal(0, sem.ReaderCount);
    }

    private static long[] Snapshot(long[] counters)
    {
        long[] copy = new long[counters.Length];
        for (int i = 0; i < counters.Length; i++)
        {
            copy[i] = Volatile.Read(ref counters[i]);
        }

        return copy;
    }

    private static bool Enter(Action<ISpinWaiter?> enter, ISpinWaiter? waiter)
    {
        enter(waiter);
        return true;
    }

    private static void AssertFree(RwSemaphore sem)
    {
        Assert.False(sem.IsWriteLocked, "Left write-locked.");
        Assert.Equal(0, sem.ReaderCount);
        Assert.Equal(0, sem.WaitingWriters);
    }

    private static void AssertWorksFromAnotherThread(RwSemaphore sem)
    {
        var other = new TestThread("another thread", () =>
        {
            sem.ReadLock();
            sem.ReadUnlock();
            sem.WriteLock();
            sem.WriteUnlock();
            Assert.True(sem.TryReadLock());
            sem.ReadUnlock();
            Assert.True(sem.TryWriteLock());
            sem.WriteUnlock();
        });
        other.Join();
    }

    /// <summary>Who is inside, counted by the threads themselves; any overlap the lock should forbid is a violation.</summary>
    private sealed class Occupancy
    {
        private int _readers;
        private int _writers;
        private long _violations;
        private string? _first;

        public long Violations => Volatile.Read(ref _violations);

        public string? FirstViolation => Volatile.Read(ref _first);

        /// <summary>A counter that only writers bump, with a plain (racy) increment.</summary>
        public long PlainWrites { get; private set; }

        // Reader and writer each announce themselves (full fence) and then look at the other side: if a reader and a
        // writer were ever inside together, at least one of them sees the other (Dekker).
        public void EnterReader()
        {
            Interlocked.Increment(ref _readers);
            if (Volatile.Read(ref _writers) != 0)
            {
                Violate("a reader entered while a writer was inside");
            }
        }

        public void LeaveReader() => Interlocked.Decrement(ref _readers);

        public void EnterWriter()
        {
            if (Interlocked.Increment(ref _writers) != 1)
            {
                Violate("two writers inside");
            }

            if (Volatile.Read(ref _readers) != 0)
            {
                Violate("a writer entered while a reader was inside");
            }

            PlainWrites++;
        }

        public void LeaveWriter()
        {
            if (Volatile.Read(ref _readers) != 0)
            {
                Violate("a reader was inside while the writer left");
            }

            Interlocked.Decrement(ref _writers);
        }

        public void WriterBecomesReader()
        {
            // Still exclusive here (the writer bit is set), so the order of the two steps is invisible to others.
            Interlocked.Increment(ref _readers);
            Interlocked.Decrement(ref _writers);
        }

        private void Violate(string what)
        {
            Interlocked.Increment(ref _violations);
            Interlocked.CompareExchange(ref _first, what, null);
        }
    }
}
