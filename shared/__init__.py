"""apigw-adf-bridge: land AWS API Gateway data in Azure Blob Storage for Azure Data Factory."""

__version__ = "0.1.0"
