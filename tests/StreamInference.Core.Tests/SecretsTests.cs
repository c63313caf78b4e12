using StreamInference.Infrastructure.Processing;

namespace StreamInference.Core.Tests;

public sealed class SecretsTests
{
    [Theory]
    [InlineData("Kafka:Consumer:sasl.password")]
    [InlineData("Kafka:Producer:SaslPassword")]
    [InlineData("Kafka:Consumer:sasl.jaas.config")]
    [InlineData("Kafka:Consumer:sasl.oauthbearer.config")]
    [InlineData("Kafka:Producer:ssl.key.pem")]
    [InlineData("Kafka:Producer:ssl.keystore.password")]
    [InlineData("SchemaRegistry:BasicAuthUserInfo")]
    public void SecretKeys_AreMasked(string key)
    {
        Assert.True(Secrets.IsSecretKey(key));
        Assert.Equal(Secrets.Mask, Secrets.Redact(key, "hunter2"));
    }

    [Theory]
    [InlineData("Kafka:BootstrapServers", "broker-1:9092")]
    [InlineData("Kafka:Consumer:sasl.username", "alice")]
    [InlineData("Kafka:Consumer:security.protocol", "SASL_SSL")]
    [InlineData("Redis:Configuration", "cache:6379,ssl=true")]
    public void OtherSettings_AreShownAsTheyAre(string key, string value) => Assert.Equal(value, Secrets.Redact(key, value));

    [Theory]
    [InlineData("https://reg:s3cret@registry:8081", "https://reg:****@registry:8081")]
    [InlineData("cache:6380,user=bob,password=r3dis,defaultDatabase=2", "cache:6380,user=bob,password=****,defaultDatabase=2")]
    [InlineData("redis://bob:r3dis@cache:6380/2", "redis://bob:****@cache:6380/2")]
    [InlineData("no credentials at http://registry:8081", "no credentials at http://registry:8081")]
    public void PasswordsInsideText_AreMasked(string text, string expected) => Assert.Equal(expected, Secrets.RedactText(text));

    [Fact]
    public void PrintedConfiguration_NeverContainsTheSecrets()
    {
        var options = new ProcessorOptions();
        options.Kafka.Consumer.SaslPassword = "consumer-secret";
        options.Kafka.Producer.SaslPassword = "producer-secret";
        options.Kafka.Consumer.SaslUsername = "alice";
        options.SchemaRegistry.Url = "https://reg:url-secret@registry:8081";
        options.SchemaRegistry.BasicAuthUserInfo = "reg:basic-secret";
        options.Redis.Configuration = "cache:6380,password=redis-secret";
        var printed = string.Join('\n', ConfigurationPrinter.Lines(options));
        foreach (var secret in new[] { "consumer-secret", "producer-secret", "url-secret", "basic-secret", "redis-secret" })
            Assert.DoesNotContain(secret, printed);
        Assert.Contains("Kafka:Consumer:sasl.username = alice", printed);
        Assert.Contains("Pipeline:MaxBatchSize = 256", printed);
    }
}
