// apigw-adf-bridge on Azure: the Function App (Flex Consumption, Python 3.11) running as a
// user-assigned managed identity, one storage account reachable by identity only (shared keys
// off) for the Functions host, the durable task hub, the deployment package and the landing
// container, a Key Vault in RBAC mode, and Application Insights on a Log Analytics workspace.
//
//   az deployment group create -g <resource-group> -f infra/azure/main.bicep \
//     -p @infra/azure/main.parameters.example.json
//
// README.md "Deployment" walks through it; the AWS half is infra/aws/federation.yaml.

targetScope = 'resourceGroup'

@description('Deployment environment: APP_ENVIRONMENT, the first segment of every landing path.')
@allowed([
  'dev'
  'stage'
  'prod'
])
param environmentName string = 'dev'

@description('Region of every resource; it must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Function App name, globally unique.')
param appName string = 'func-apigw-adf-bridge-${environmentName}'

@description('Storage account (3-24 lowercase letters and digits) for the host, the task hub, the package and landing.')
@minLength(3)
@maxLength(24)
param storageAccountName string = 'stapigwadfbridge${environmentName}'

@description('Key Vault name: 3-24 letters, digits and hyphens, starting with a letter (the default fits every environment; tests/infra checks).')
@minLength(3)
@maxLength(24)
param keyVaultName string = 'kv-apigwadfbridge-${environmentName}'

@description('Container that receives landed windows (LANDING_CONTAINER).')
param landingContainerName string = 'landing'

@description('Durable Functions task hub (DURABLE_TASK_HUB): letters and digits, 3-45 characters.')
param durableTaskHub string = 'apigwadfbridge${environmentName}'

@description('Source catalog path relative to the app root (SOURCE_CATALOG_PATH).')
param sourceCatalogPath string = 'catalog.toml'

@description('Region of the AWS STS endpoint (AWS_REGION); every catalog source names its own region too.')
param awsRegion string = 'eu-west-1'

@description('When to probe the catalog sources on a timer (PROBE_SCHEDULE, NCRONTAB with seconds, e.g. 0 */15 * * * *); each result is an Application Insights availability result. Empty: no timer function.')
param probeSchedule string = ''

@description('Comma-separated sources the timer probes (PROBE_SOURCES); empty: every source labelled for this environment.')
param probeSources string = ''

@description('Object id of the Data Factory managed identity. It gets Key Vault Secrets User (to read the function key) and Storage Blob Data Reader on the landing container. Empty skips both.')
param dataFactoryPrincipalId string = ''

@description('Client id of the Entra app registration that protects the HTTP API (App Service authentication); ADF asks for tokens for api://<client id>. Empty leaves the API to function keys alone.')
param easyAuthClientId string = ''

@description('Upper bound of Flex Consumption instances. Instances x maxConcurrentActivityFunctions (host.json) is the number of concurrent API callers: see README "Rate limits".')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Zone-redundant storage (Standard_ZRS) and a zone-redundant Flex Consumption plan, in a region with availability zones. Off: locally redundant storage, one zone.')
param zoneRedundant bool = false

@description('Close storage and Key Vault to public networks: publicNetworkAccess Disabled, network ACLs deny, private endpoints (blob, queue, table, vault) with their private DNS zones in a new virtual network that the Function App joins (outbound to AWS through a NAT gateway). ADF then reaches storage and Key Vault through managed private endpoints of a managed virtual network integration runtime (README "Deployment"). The Function App itself stays reachable, behind Entra authentication and function keys.')
param privateNetworking bool = false

@description('Address space of that virtual network (privateNetworking).')
param vnetAddressPrefix string = '10.40.0.0/16'

@description('Subnet the Function App joins (privateNetworking), inside vnetAddressPrefix; delegated to Microsoft.App/environments.')
param appSubnetPrefix string = '10.40.0.0/24'

@description('Subnet of the private endpoints (privateNetworking), inside vnetAddressPrefix.')
param endpointSubnetPrefix string = '10.40.1.0/24'

@description('Tags on every resource.')
param tags object = {
  app: 'apigw-adf-bridge'
  environment: environmentName
}

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}
var deploymentContainerName = 'app-package'
var vnetName = 'vnet-${appName}'
var publicAccess = privateNetworking ? 'Disabled' : 'Enabled'
var networkAcls = {
  defaultAction: privateNetworking ? 'Deny' : 'Allow'
  bypass: 'AzureServices'
  ipRules: []
  virtualNetworkRules: []
}

// --- identity -------------------------------------------------------------------------------

// The app's only identity: storage, Key Vault and, through AWS IAM web identity federation,
// API Gateway. Its principal id is the `sub` the AWS roles trust (infra/aws/federation.yaml).
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}'
  location: location
  tags: tags
}

// --- storage ---------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: zoneRedundant ? 'Standard_ZRS' : 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicAccess
    networkAcls: networkAcls
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource landingContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: landingContainerName
  properties: {
    publicAccess: 'None'
  }
}

// --- monitoring ------------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${appName}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

// --- Key Vault -------------------------------------------------------------------------------

// Holds the function key ADF sends (secret `adf-function-key`, see README "Deployment") and
// the API secrets sources name (KEY_VAULT_URL). Access is RBAC only; no access policies.
resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: publicAccess
    networkAcls: networkAcls
  }
}

// --- private network (privateNetworking) -----------------------------------------------------

// The app's outbound calls (STS, API Gateway) leave through the NAT gateway once it joins the
// virtual network; storage and Key Vault are reached on their private endpoints.
resource natIp 'Microsoft.Network/publicIPAddresses@2023-11-01' = if (privateNetworking) {
  name: 'pip-${appName}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
  }
}

resource nat 'Microsoft.Network/natGateways@2023-11-01' = if (privateNetworking) {
  name: 'ng-${appName}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIpAddresses: [
      {
        id: natIp.id
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = if (privateNetworking) {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        // Flex Consumption joins a subnet delegated to Microsoft.App/environments.
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          natGateway: {
            id: nat.id
          }
          delegations: [
            {
              name: 'flex'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'endpoints'
        properties: {
          addressPrefix: endpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

// One private endpoint per service the app and the host use: blob (host, package, landing),
// queue and table (the durable task hub), vault (secrets).
var privateEndpoints = [
  {
    group: 'blob'
    target: storage.id
    zone: 'privatelink.blob.${environment().suffixes.storage}'
  }
  {
    group: 'queue'
    target: storage.id
    zone: 'privatelink.queue.${environment().suffixes.storage}'
  }
  {
    group: 'table'
    target: storage.id
    zone: 'privatelink.table.${environment().suffixes.storage}'
  }
  {
    group: 'vault'
    target: keyVault.id
    zone: 'privatelink.vaultcore.azure.net'
  }
]

resource privateZones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for endpoint in privateEndpoints: if (privateNetworking) {
  name: endpoint.zone
  location: 'global'
  tags: tags
}]

resource privateZoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (endpoint, i) in privateEndpoints: if (privateNetworking) {
  parent: privateZones[i]
  name: vnetName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource endpoints 'Microsoft.Network/privateEndpoints@2023-11-01' = [for (endpoint, i) in privateEndpoints: if (privateNetworking) {
  name: 'pe-${appName}-${endpoint.group}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, 'endpoints')
    }
    privateLinkServiceConnections: [
      {
        name: endpoint.group
        properties: {
          privateLinkServiceId: endpoint.target
          groupIds: [
            endpoint.group
          ]
        }
      }
    ]
  }
  dependsOn: [
    vnet
  ]
}]

resource endpointZones 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = [for (endpoint, i) in privateEndpoints: if (privateNetworking) {
  parent: endpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: endpoint.group
        properties: {
          privateDnsZoneId: privateZones[i].id
        }
      }
    ]
  }
}]

// --- role assignments ------------------------------------------------------------------------

// The Functions host and the Durable extension: blobs (leases, keys, large messages, package),
// queues (work items, control) and tables (history, instances) of the task hub.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The app's landing writes. The account-wide Blob Data Owner above already covers them; this
// assignment states the need on its own scope, so it survives moving landing to another account
// or narrowing the host's role.
resource landingWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(landingContainer.id, identity.id, roles.storageBlobDataContributor)
  scope: landingContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Data Factory: reads the function key from Key Vault and checks _SUCCESS on landing.
resource adfSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(dataFactoryPrincipalId)) {
  name: guid(keyVault.id, dataFactoryPrincipalId, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: dataFactoryPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource adfLandingReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(dataFactoryPrincipalId)) {
  name: guid(landingContainer.id, dataFactoryPrincipalId, roles.storageBlobDataReader)
  scope: landingContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: dataFactoryPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- Function App ----------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${appName}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    virtualNetworkSubnetId: privateNetworking ? resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, 'app') : null
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // The platform probes it and replaces an instance that stops answering; anonymous, no outbound calls.
      healthCheckPath: '/api/health'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  // The host reaches its storage as the identity from its first start (and, with privateNetworking,
  // through its private endpoints, resolved by their DNS zones).
  dependsOn: [
    hostBlobOwner
    hostQueueContributor
    hostTableContributor
    vnet
    endpointZones
  ]
}

// Exactly the settings the app and its host read; docs/CONFIGURATION.md and README "Settings"
// describe them. LANDING_CONNECTION_STRING, LANDING_CREATE_CONTAINER and RUN_STATE_DIR are for
// local runs and the CLI and stay unset here; tests/test_infra.py keeps this list honest.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    APP_ENVIRONMENT: environmentName
    SOURCE_CATALOG_PATH: sourceCatalogPath
    LANDING_ACCOUNT_URL: storage.properties.primaryEndpoints.blob
    LANDING_CONTAINER: landingContainer.name
    KEY_VAULT_URL: keyVault.properties.vaultUri
    SECRETS_PROVIDER: 'keyvault'
    AZURE_CLIENT_ID: identity.properties.clientId
    AWS_REGION: awsRegion
    DURABLE_TASK_HUB: durableTaskHub
    AzureWebJobsStorage__accountName: storage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    PROBE_SCHEDULE: probeSchedule
    PROBE_SOURCES: probeSources
  }
  dependsOn: [
    landingWriter
    appSecretsUser
  ]
}

// App Service authentication in front of the HTTP API, for the ADF linked service's managed
// identity (authentication "MSI", resourceId api://<easyAuthClientId>). The function key is still
// required: the routes use AuthLevel.FUNCTION. /api/health stays anonymous.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(easyAuthClientId)) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/health'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: easyAuthClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${easyAuthClientId}'
            easyAuthClientId
          ]
          defaultAuthorizationPolicy: {
            allowedPrincipals: {
              identities: empty(dataFactoryPrincipalId) ? [] : [
                dataFactoryPrincipalId
              ]
            }
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// --- outputs ---------------------------------------------------------------------------------

output functionAppName string = functionApp.name
@description('functionAppUrl of the ADF linked service ls_apigw_adf_bridge.')
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
@description('AZURE_CLIENT_ID: the client id of the app identity.')
output identityClientId string = identity.properties.clientId
@description('ManagedIdentityObjectId of infra/aws/federation.yaml: the `sub` of the tokens the app presents to STS.')
output identityPrincipalId string = identity.properties.principalId
@description('TenantId of infra/aws/federation.yaml: the issuer is https://sts.windows.net/<tenantId>/.')
output tenantId string = tenant().tenantId
output landingAccountUrl string = storage.properties.primaryEndpoints.blob
output keyVaultUri string = keyVault.properties.vaultUri
