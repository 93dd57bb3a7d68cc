using SpecVm.Scaling;

namespace SpecVm.Tests.Scaling;

public class UslTests
{
    private static List<(int, double)> Synthetic(double sigma, double kappa, double x1, params int[] threads) =>
        threads.Select(n => (n, x1 * n / (1 + (sigma * (n - 1)) + (kappa * n * (n - 1))))).ToList();

    [Theory]
    [InlineData(0.05, 0.001)]
    [InlineData(0.2, 0.02)]
    [InlineData(0.0, 0.0)]
    public void FitRecoversKnownSigmaAndKappa(double sigma, double kappa)
    {
        UslFit fit = Usl.Fit(Synthetic(sigma, kappa, 1000, 1, 2, 4, 8, 16, 32));
        Assert.True(fit.HasFit, fit.Note);
        Assert.Equal(sigma, fit.Sigma!.Value, 6);
        Assert.Equal(kappa, fit.Kappa!.Value, 6);
        Assert.Equal(1000 * 16 / (1 + (sigma * 15) + (kappa * 16 * 15)), fit.Predict(16), 3);
    }

    [Fact]
    public void FitGivesThePeakThreadCount()
    {
        UslFit fit = Usl.Fit(Synthetic(0.1, 0.01, 500, 1, 2, 3, 4, 6, 8));
        Assert.Equal(Math.Sqrt(0.9 / 0.01), fit.PeakThreads!.Value, 3);
    }

    [Fact]
    public void TwoThreadCountsAreTooFewPoints()
    {
        UslFit fit = Usl.Fit(Synthetic(0.1, 0.01, 500, 1, 2));
        Assert.False(fit.HasFit);
        Assert.Contains("too few points (2)", fit.Note);
    }

    [Fact]
    public void SuperlinearDataIsClampedNotNegative()
    {
        // Throughput that grows faster than linear would need σ < 0: rejected, clamped to 0.
        UslFit fit = Usl.Fit([(1, 100.0), (2, 210.0), (4, 440.0)]);
        Assert.True(fit.HasFit);
        Assert.True(fit.Sigma >= 0 && fit.Kappa >= 0);
        Assert.NotNull(fit.Note);
    }

    [Fact]
    public void NoOneThreadPointMeansNoFit()
    {
        UslFit fit = Usl.Fit([(2, 100.0), (3, 140.0), (4, 170.0)]);
        Assert.False(fit.HasFit);
        Assert.Contains("1-thread", fit.Note);
    }
}
