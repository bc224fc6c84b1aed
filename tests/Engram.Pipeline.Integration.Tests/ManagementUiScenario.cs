using System.Text.Json;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Testing;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_an_operator_watches_the_management_ui(ServersFixture servers, ITestOutputHelper output)
{
    [Fact]
    public async Task The_queues_their_consumers_the_traffic_and_the_error_queue_are_there_to_see()
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "management", ingestProcesses: 2);
        var report = await SimulationRun.RunAsync(world.Cluster, new SimulationOptions(Devices: 2, MutationsPerDevice: 1_500, ["team"]),
            progress: null, CancellationToken.None);
        Assert.True(report.Pass);
        // A message nobody can read: it must end in engram-push_error, with the reason, not vanish.
        await world.Servers.PublishRawAsync(world.VirtualHost, WireNames.PushQueue, "this is not json", "application/vnd.masstransit+json");

        var queues = await WaitForQueuesAsync(world, queues =>
            Stat(queues, WireNames.PushQueue, "publish") > 0 && Stat(queues, WireNames.PushQueue, "ack") > 0
            && Stat(queues, WireNames.PullQueue, "publish") > 0 && queues.ContainsKey(WireNames.PushQueue + "_error")
            && Messages(queues, WireNames.PushQueue + "_error") == 1);

        foreach (var (name, queue) in queues.OrderBy(q => q.Key))
        {
            // A temporary queue that is going away may come without its counters.
            output.WriteLine($"{name}: durable {Field(queue, "durable")}, consumers {Field(queue, "consumers")}, " +
                             $"messages {Messages(queues, name)}, published {Stat(queues, name, "publish")}, acked {Stat(queues, name, "ack")}");
        }
        Assert.Equal(2, queues[WireNames.PushQueue].GetProperty("consumers").GetInt32());
        Assert.Equal(2, queues[WireNames.PullQueue].GetProperty("consumers").GetInt32());
        foreach (var device in world.Cluster.Devices)
        {
            var queue = WireNames.DeviceQueue(device.DeviceId);
            Assert.Equal(1, queues[queue].GetProperty("consumers").GetInt32());
            // MassTransit binds message exchanges to the queue's own exchange of the same name.
            using var bindings = await world.Servers.GetManagementAsync(
                $"api/exchanges/{Uri.EscapeDataString(world.VirtualHost)}/{queue}/bindings/destination");
            var sources = bindings.RootElement.EnumerateArray().Select(b => b.GetProperty("source").GetString()).Order().ToList();
            output.WriteLine($"{queue} receives from: {string.Join(", ", sources)}");
            Assert.Equal(["Engram.Pipeline.Contracts:TargetAdvanced"], sources);
        }
        // Every engram-* queue survives a broker restart; only MassTransit's per-process reply queues are temporary.
        Assert.All(queues.Where(q => q.Key.StartsWith("engram-", StringComparison.Ordinal)),
            queue => Assert.True(queue.Value.GetProperty("durable").GetBoolean(), queue.Key));

        var screenshot = ScreenshotQueuePage(world);
        output.WriteLine($"management UI screenshot: {screenshot}");
    }

    /// <summary>
    /// Logs into the management UI in headless Chromium, opens the engram-push queue page and saves a
    /// screenshot; fails if the page does not show the queue and its consumers.
    /// </summary>
    private static string ScreenshotQueuePage(PipelineWorld world)
    {
        var options = new ChromeOptions { BinaryLocation = "/usr/bin/chromium" };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            $"--user-data-dir={Directory.CreateTempSubdirectory("engram-chromium-").FullName}");
        using var service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver");
        service.HideCommandPromptWindow = true;
        using var driver = new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
        var wait = new WebDriverWait(driver, TimeSpan.FromSeconds(30));
        // The UI redraws the page every few seconds; an element read during a redraw goes stale.
        wait.IgnoreExceptionTypes(typeof(StaleElementReferenceException), typeof(NoSuchElementException));
        var management = world.Servers.ManagementUri;

        driver.Navigate().GoToUrl(management);
        wait.Until(d => d.FindElements(By.Name("username")).Count > 0);
        driver.FindElement(By.Name("username")).SendKeys(world.Servers.RabbitUser);
        driver.FindElement(By.Name("password")).SendKeys(world.Servers.RabbitPassword);
        driver.FindElement(By.CssSelector("input[type=submit]")).Click();
        wait.Until(d => d.FindElements(By.Id("logout")).Count > 0);

        driver.Navigate().GoToUrl(new Uri(management, $"#/queues/{Uri.EscapeDataString(world.VirtualHost)}/{WireNames.PushQueue}"));
        wait.Until(d => d.FindElements(By.TagName("h1")).Any(h => h.Text.Contains(WireNames.PushQueue, StringComparison.Ordinal)));
        wait.Until(d => d.PageSource.Contains("Consumers", StringComparison.Ordinal));

        var path = Path.Combine(RepositoryRoot.Find(), "artifacts", "screenshots", "management-engram-push.png");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(path);
        Assert.True(new FileInfo(path).Length > 10_000, "the screenshot is empty");
        return path;
    }

    private static async Task<Dictionary<string, JsonElement>> WaitForQueuesAsync(
        PipelineWorld world, Func<Dictionary<string, JsonElement>, bool> ready)
    {
        var queues = new Dictionary<string, JsonElement>();
        // The management API refreshes its statistics every few seconds.
        await Condition.WaitUntilAsync(async () =>
        {
            using var document = await world.Servers.GetManagementAsync($"api/queues/{Uri.EscapeDataString(world.VirtualHost)}");
            queues = document.RootElement.EnumerateArray().ToDictionary(q => q.GetProperty("name").GetString()!, q => q.Clone());
            return ready(queues);
        }, TimeSpan.FromSeconds(60), "the management API shows the queues and their traffic",
            () => Task.FromResult(string.Join(", ", queues.Keys)), TimeSpan.FromMilliseconds(500));
        return queues;
    }

    private static long Stat(Dictionary<string, JsonElement> queues, string queue, string stat) =>
        queues.TryGetValue(queue, out var q) && q.TryGetProperty("message_stats", out var stats) && stats.TryGetProperty(stat, out var value)
            ? value.GetInt64()
            : 0;

    private static string Field(JsonElement queue, string name) =>
        queue.TryGetProperty(name, out var value) ? value.ToString() : "?";

    private static long Messages(Dictionary<string, JsonElement> queues, string queue) =>
        queues.TryGetValue(queue, out var q) && q.TryGetProperty("messages", out var messages) ? messages.GetInt64() : 0;
}
